"""Attention for a CPU decoding step: transformers' SDPA attention, except for one new token per document.

A decoding step's query is one token against the whole cache. For it, transformers' SDPA path hands torch
the query with `enable_gqa` (no padding mask) or the query heads packed against their key/value head (with
one), and torch's CPU flash kernel does the first poorly: on a 2-core AVX-512 BF16 CPU, the 0.8B's 16 layers
behind a receipt prompt (16 query heads on 8 key/value heads, ~1,450 keys of 96 dims) took 38.8 ms a step
in bfloat16 and 11.8 in float32 (bench/decode_cache.py --compare attention measures it in the model). Here
the step is two plain products over the cache as it lies, scores and `probabilities @ values`, in the
cache's dtype, with the softmax in float32: 9.1 ms a step in either dtype. Prompts (more than one query
token), the vision tower and GPUs keep transformers' SDPA path unchanged.

In float32 the scores are `query @ keysᵀ`: MKL reads the transposed keys in place, and faster than it
computes `keys @ queryᵀ`, a product two columns wide (on a 2-core Ice Lake Xeon, 0.38 against 0.61 ms a
layer for one receipt's ~1,400 keys; eight receipts' int8-dynamic decoding step 160 → 132 ms,
docs/benchmarks.md, session 13).

In bfloat16 the scores are `keys @ queryᵀ`, the order measured on CPUs with bfloat16 in hardware, and both
products go to oneDNN, which takes only dense operands: handed the cache's views (each
head's rows a part of a longer buffer row block) it copied the keys, the values and the query before every
product (the 0.8B in bfloat16 on a 2-core AMX Xeon: 16 ms of an 86 ms step). So a view that is
the head of a larger buffer, as extractor/kv_cache.py's are, is read whole, spare rows included, and their
scores are set to -inf before the softmax: their weights are exactly 0, and the cache keeps its spare rows
zero-filled, so the output is the same (a step there: 79 → 76 ms for one receipt, 143 → 118 for eight;
docs/benchmarks.md, session 12).

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
    kv_heads, keys = key.shape[1], key.shape[2]
    scale = dim**-0.5 if scaling is None else scaling
    # heads that share a key/value head become rows of one product: (batch, kv heads, heads per kv head, dim)
    grouped = query.reshape(batch, kv_heads, heads // kv_heads, dim).to(key.dtype)
    if key.dtype == torch.float32:
        scores = torch.matmul(grouped, key.transpose(-1, -2)).mul_(scale)
    else:  # oneDNN's products: dense operands only (the module docstring says why)
        key, value = whole_buffers(key, value)
        scores = torch.matmul(key, grouped.transpose(-1, -2)).transpose(-1, -2).float().mul_(scale)
        scores[..., keys:] = float("-inf")  # the buffers' spare rows, read whole: they weigh nothing
    if attention_mask is not None:  # (batch, 1, 1, keys): the same for every head
        filled = scores[..., :keys]
        if attention_mask.dtype == torch.bool:
            filled.masked_fill_(~attention_mask, float("-inf"))
        else:
            filled.add_(attention_mask.float())
    output = torch.matmul(torch.softmax(scores, dim=-1).to(value.dtype), value)
    return output.reshape(batch, 1, heads, dim).to(query.dtype)


def whole_buffers(key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`key` and `value` (batch, kv heads, keys, dim) widened to every row of the buffers they are the head
    of, when both are such views with the same room (a GrowingLayer's); otherwise as they are."""
    whole_key, whole_value = _buffer_rows(key), _buffer_rows(value)
    if whole_key is None or whole_value is None or whole_key.shape != whole_value.shape:
        return key, value
    return whole_key, whole_value


def _buffer_rows(view: torch.Tensor) -> torch.Tensor | None:
    """The whole (batch, heads, capacity, dim) buffer whose first rows `view` is, or None if it is not one:
    rows of `dim` contiguous values, heads `capacity` rows apart, documents `heads` such blocks apart. The
    rows past the view's are read but weigh nothing, so any finite values there give the same output."""
    batch, heads, rows, dim = view.shape
    head_stride = view.stride(1)
    if view.stride(3) != 1 or view.stride(2) != dim or head_stride % dim or head_stride // dim <= rows:
        return None
    if batch > 1 and view.stride(0) != heads * head_stride:
        return None
    if (
        view.storage_offset() + batch * heads * head_stride
    ) * view.element_size() > view.untyped_storage().nbytes():
        return None
    return view.as_strided(
        (batch, heads, head_stride // dim, dim), (heads * head_stride, head_stride, dim, 1)
    )


def register() -> str:
    """Make `ATTENTION` a name transformers accepts as attn_implementation; returns it."""
    AttentionInterface.register(ATTENTION, cpu_sdpa_attention)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)
    return ATTENTION
