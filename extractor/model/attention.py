"""Attention for a CPU decoding step: transformers' SDPA attention, except for one new token per document.

A decoding step's query is one token against the whole cache. For it, transformers' SDPA path hands torch
the query with `enable_gqa` (no padding mask) or the query heads packed against their key/value head (with
one), and torch's CPU flash kernel does the first poorly: on a 2-core AVX-512 BF16 CPU, the 0.8B's 16 layers
behind a receipt prompt (16 query heads on 8 key/value heads, ~1,450 keys of 96 dims) took 38.8 ms a step
in bfloat16 and 11.8 in float32 (bench/decode_cache.py --compare attention measures it in the model). Here
the step is two plain products over the cache as it lies, `keys @ queryᵀ` (the cache's buffer rows read
in place: the other order made torch copy every layer's keys each step) and `probabilities @ values`, in
the cache's dtype, with the softmax in float32: 9.1 ms a step in either dtype. Prompts (more than one query
token), the vision tower and GPUs keep transformers' SDPA path unchanged.

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
    """One query token per document: (batch, heads, 1, dim) -> (batch, 1, heads, dim). The products run in
    the cache's dtype, the softmax in float32."""
    batch, heads, _, dim = query.shape
    kv_heads = key.shape[1]
    scale = dim**-0.5 if scaling is None else scaling
    # heads that share a key/value head become that head's columns: (batch, kv heads, dim, heads per kv head)
    grouped = query.reshape(batch, kv_heads, heads // kv_heads, dim).to(key.dtype).transpose(-1, -2)
    scores = torch.matmul(key, grouped).transpose(-1, -2).float().mul_(scale)
    if attention_mask is not None:  # (batch, 1, 1, keys): the same for every head
        if attention_mask.dtype == torch.bool:
            scores.masked_fill_(~attention_mask, float("-inf"))
        else:
            scores.add_(attention_mask.float())
    output = torch.matmul(torch.softmax(scores, dim=-1).to(value.dtype), value)
    return output.reshape(batch, 1, heads, dim).to(query.dtype)


def register() -> str:
    """Make `ATTENTION` a name transformers accepts as attn_implementation; returns it."""
    AttentionInterface.register(ATTENTION, cpu_sdpa_attention)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)
    return ATTENTION
