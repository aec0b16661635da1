"""Attention for a CPU decoding step: transformers' SDPA attention, except for one new token per document.

A decoding step's query is one token against the whole cache, so the step reads every cached key and value
once and does little arithmetic on them. torch's CPU flash kernel does that step poorly in bfloat16: it
takes ~7x its float32 time at the 0.8B's shape behind a receipt prompt (1 query, 16 heads on 8 key/value
heads, ~1,500 keys, 96 dims; one thread), and in float32 it is no faster than two plain matrix products.
So on a CPU the step is computed here as (query @ keysᵀ) -> softmax -> @ values, in float32, with the
query heads that share a key/value head stacked against it (no repeated keys). The cache keeps float32 keys
and values for a bfloat16 model on a CPU (`cache_dtype`): a bfloat16 value is exact in float32, so only the
attention arithmetic becomes more precise, and no step converts the whole cache. Prompts (more than one
query token), the vision tower and GPUs keep transformers' SDPA path unchanged.

Registered with transformers' AttentionInterface as `ATTENTION`, the extension point transformers offers
for an attention function, with SDPA's mask function.
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

ATTENTION = "bayou_cpu_sdpa"


def cpu_sdpa_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers' attention signature: query (batch, heads, queries, dim), key/value (batch, kv heads,
    keys, dim); returns (batch, queries, heads, dim)."""
    if query.shape[2] != 1 or query.device.type != "cpu" or (dropout and module.training):
        if key.dtype != query.dtype:  # a float32 cache behind a bfloat16 prompt: SDPA wants one dtype
            key, value = key.to(query.dtype), value.to(query.dtype)
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    return one_query_attention(query, key, value, attention_mask, scaling), None


def one_query_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
) -> torch.Tensor:
    """One query token per document, in float32: (batch, heads, 1, dim) -> (batch, 1, heads, dim)."""
    batch, heads, _, dim = query.shape
    kv_heads = key.shape[1]
    scale = dim**-0.5 if scaling is None else scaling
    # heads that share a key/value head become that head's rows: (batch, kv heads, heads per kv head, dim)
    grouped = query.reshape(batch, kv_heads, heads // kv_heads, dim).float()
    scores = torch.matmul(grouped, key.float().transpose(-1, -2)).mul_(scale)
    if attention_mask is not None:  # (batch, 1, 1, keys): the same for every head
        if attention_mask.dtype == torch.bool:
            scores.masked_fill_(~attention_mask, float("-inf"))
        else:
            scores.add_(attention_mask.float())
    output = torch.matmul(torch.softmax(scores, dim=-1), value.float())
    return output.reshape(batch, 1, heads, dim).to(query.dtype)


def cache_dtype(device: torch.device, dtype: torch.dtype) -> torch.dtype | None:
    """The dtype the KV cache keeps on `device` for a model in `dtype` (None: the model's own)."""
    return torch.float32 if device.type == "cpu" and dtype != torch.float32 else None


def register() -> str:
    """Make `ATTENTION` a name transformers accepts as attn_implementation; returns it."""
    AttentionInterface.register(ATTENTION, cpu_sdpa_attention)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)
    return ATTENTION
