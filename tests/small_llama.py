"""A small Llama language model and greedy decoding with a KV cache: what the KV-cache and attention tests
decode with (transformers' real model classes, random weights)."""

from __future__ import annotations

import torch
from transformers import LlamaConfig


def small_llama_config() -> LlamaConfig:
    """2 layers, 4 query heads on 2 key/value heads: grouped attention, as the published models have."""
    return LlamaConfig(
        vocab_size=97,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
    )


def greedy(model, cache, prompt: torch.Tensor, steps: int, mask: torch.Tensor | None = None, keep_after=None):
    """Greedy decoding of a batch (left-padded where `mask` says); after `keep_after` steps only the first
    row goes on. Returns each step's last-position logits (float32) and the cache."""
    logits_seen = []
    mask = torch.ones_like(prompt) if mask is None else mask
    with torch.inference_mode():
        out = model(input_ids=prompt, attention_mask=mask, cache=cache, use_cache=True)
        for step in range(steps):
            logits = out.logits[:, -1].float()
            logits_seen.append(logits.clone())
            if keep_after is not None and step == keep_after:
                out.cache.batch_select_indices(torch.tensor([0]))
                logits, mask = logits[:1], mask[:1]
            token = logits.argmax(-1, keepdim=True)
            mask = torch.cat([mask, torch.ones_like(token)], dim=-1)
            out = model(input_ids=token, attention_mask=mask, cache=out.cache, use_cache=True)
    return logits_seen, out.cache
