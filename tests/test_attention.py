"""bayou's CPU decoding step for attention: SDPA's results for one new token per document."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from extractor.kv_cache import GrowingCache
from extractor.model.attention import ATTENTION, cpu_sdpa_attention, one_query_attention, whole_buffers
from extractor.model.loader import attention_implementation
from tests.small_llama import greedy, small_llama_config


def _reference(query, key, value, mask=None):
    """SDPA in float64 with the key/value heads repeated for the query heads that share them."""
    repeat = query.shape[1] // key.shape[1]
    key, value = (t.double().repeat_interleave(repeat, dim=1) for t in (key, value))
    out = F.scaled_dot_product_attention(query.double(), key, value, attn_mask=mask)
    return out.transpose(1, 2)  # (batch, queries, heads, dim), as transformers' attention functions return


def _inputs(batch=2, heads=8, kv_heads=2, keys=37, dim=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    query = torch.randn(batch, heads, 1, dim, generator=generator)
    key = torch.randn(batch, kv_heads, keys, dim, generator=generator)
    value = torch.randn(batch, kv_heads, keys, dim, generator=generator)
    return query, key, value


CPU = torch.device("cpu")


def test_one_query_matches_sdpa_with_grouped_heads() -> None:
    query, key, value = _inputs()
    got = one_query_attention(query, key, value, None)
    assert got.shape == (2, 1, 8, 16)
    torch.testing.assert_close(got.double(), _reference(query, key, value), rtol=1e-5, atol=1e-5)


def test_one_query_honours_a_padding_mask_bool_or_additive() -> None:
    query, key, value = _inputs()
    allowed = torch.ones(2, 1, 1, 37, dtype=torch.bool)
    allowed[1, ..., :10] = False  # the second document is left-padded by 10 positions
    expected = _reference(query, key, value, allowed)
    torch.testing.assert_close(
        one_query_attention(query, key, value, allowed).double(), expected, rtol=1e-5, atol=1e-5
    )
    additive = torch.zeros(2, 1, 1, 37).masked_fill(~allowed, float("-inf"))
    torch.testing.assert_close(
        one_query_attention(query, key, value, additive).double(), expected, rtol=1e-5, atol=1e-5
    )
    # padding must matter: the padded row differs from attending everything
    unmasked = _reference(query, key, value)
    assert not torch.allclose(unmasked[1], expected[1], atol=1e-3)


def test_a_bfloat16_cache_is_read_in_bfloat16_with_a_float32_softmax() -> None:
    query, key, value = (t.bfloat16() for t in _inputs())
    got = one_query_attention(query, key, value, None, scaling=0.25)
    assert got.dtype == torch.bfloat16
    expected = F.scaled_dot_product_attention(
        query.double(),
        key.double().repeat_interleave(4, 1),
        value.double().repeat_interleave(4, 1),
        scale=0.25,
    ).transpose(1, 2)
    # the scores' and the output's bfloat16 rounding, no more
    torch.testing.assert_close(got.double(), expected, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("padded", [False, True])
def test_keys_and_values_read_in_place_from_a_larger_buffer(dtype, padded) -> None:
    """The cache hands attention views of the filled part of bigger buffers: the same results as compact
    tensors (bfloat16 reads the buffers whole: their spare rows, here large values, must weigh nothing)."""
    query, key, value = (t.to(dtype) for t in _inputs(keys=37))
    buffers = [torch.full((2, 2, 64, 16), 1e4, dtype=dtype) for _ in range(2)]
    buffers[0][:, :, :37] = key
    buffers[1][:, :, :37] = value
    mask = None
    if padded:
        mask = torch.ones(2, 1, 1, 37, dtype=torch.bool)
        mask[1, ..., :5] = False
    viewed = one_query_attention(query, buffers[0][:, :, :37], buffers[1][:, :, :37], mask)
    torch.testing.assert_close(viewed, one_query_attention(query, key, value, mask), rtol=0, atol=0)
    if dtype == torch.bfloat16:
        reference = _reference(query, key, value, mask).to(dtype)
        torch.testing.assert_close(viewed, reference, rtol=2e-2, atol=2e-2)


def test_a_view_heading_a_larger_buffer_is_widened_to_it() -> None:
    buffer = torch.zeros(2, 2, 64, 16, dtype=torch.bfloat16)
    key, value = buffer[:, :, :37], buffer.clone()[:, :, :37]
    widened_key, widened_value = whole_buffers(key, value)
    assert widened_key.shape == (2, 2, 64, 16) and widened_key.data_ptr() == buffer.data_ptr()
    assert widened_value.shape == (2, 2, 64, 16)
    # compact tensors, a part of one document's buffer only, and mismatched buffers stay as they are
    compact = key.contiguous()
    assert whole_buffers(compact, compact)[0] is compact
    one_document = buffer[1:, :, :37]
    assert whole_buffers(one_document, one_document)[0].shape == (1, 2, 64, 16)
    shorter = torch.zeros(2, 2, 48, 16, dtype=torch.bfloat16)[:, :, :37]
    assert whole_buffers(key, shorter) == (key, shorter)
    every_other_row = buffer[:, :, :37:2]
    assert whole_buffers(every_other_row, every_other_row)[0] is every_other_row


def test_a_prompt_goes_through_transformers_sdpa() -> None:
    module = torch.nn.Module()
    module.num_key_value_groups = 4
    module.is_causal = True
    generator = torch.Generator().manual_seed(3)
    query = torch.randn(1, 8, 5, 16, generator=generator)
    key = torch.randn(1, 2, 5, 16, generator=generator)
    value = torch.randn(1, 2, 5, 16, generator=generator)
    got, weights = cpu_sdpa_attention(module, query, key, value, None, scaling=0.25)
    expected, _ = sdpa_attention_forward(module, query, key, value, None, scaling=0.25)
    assert weights is None and got.shape == (1, 5, 8, 16)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    torch.testing.assert_close(got.double(), _reference(query, key, value, causal), rtol=1e-5, atol=1e-5)


def test_cpus_get_the_decoding_step_gpus_sdpa(monkeypatch) -> None:
    assert attention_implementation(torch.device("cpu")) == ATTENTION
    monkeypatch.setitem(sys.modules, "flash_attn", None)  # no flash-attn installed
    assert attention_implementation(torch.device("cuda")) == "sdpa"


def _prefilled_layer(config: LlamaConfig, dtype: torch.dtype):
    """The first layer of a GrowingCache after a small model in `dtype` read two 9-token prompts."""
    torch.manual_seed(0)
    model = LlamaForCausalLM._from_config(config, attn_implementation=attention_implementation(CPU))
    model = model.eval().to(dtype)
    with torch.inference_mode():
        cache = model(
            input_ids=torch.randint(3, 97, (2, 9)), cache=GrowingCache(config), use_cache=True
        ).cache
    return cache.layers[0]


def test_the_caches_own_views_are_read_whole(config) -> None:
    """GrowingLayer's views are the kind whole_buffers widens: were the cache laid out otherwise, bfloat16
    decoding would silently copy the cache again before every product."""
    layer = _prefilled_layer(config, torch.bfloat16)
    key, value = whole_buffers(layer.keys, layer.values)
    assert key.shape[2] == value.shape[2] == layer.capacity() > layer.get_seq_length() == 9
    assert key.data_ptr() == layer.keys.data_ptr()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_decoding_step_reads_the_cache_without_copying_it(config, dtype) -> None:
    """Both products read the cache's buffers as they lie: a copy of the keys or values before a product
    (torch makes one for operands its kernel cannot take) would stream the whole cache twice a step. (In
    bfloat16 the probabilities, a row per query head, are made contiguous: as small as one key. The copies
    of the cache showed in bfloat16 on CPUs with it in hardware; on an Ice Lake Xeon, without, torch's
    bfloat16 products took the views as they were.)"""
    layer = _prefilled_layer(config, dtype)
    dim = config.head_dim
    query = torch.randn(2, config.num_attention_heads, 1, dim, dtype=dtype)
    with torch.profiler.profile(record_shapes=True) as profiled:
        one_query_attention(query, layer.keys, layer.values, None)
    copied = [
        shapes[0]
        for event in profiled.key_averages(group_by_input_shape=True)
        if event.key in ("aten::clone", "aten::contiguous", "aten::copy_")
        for shapes in [event.input_shapes]
    ]
    assert not [shape for shape in copied if shape and shape[-1] == dim]  # keys, values or query: none


@pytest.fixture(scope="module")
def config() -> LlamaConfig:
    return small_llama_config()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_model_decodes_as_with_sdpa(config, dtype) -> None:
    """Greedy decoding of a left-padded batch: the same tokens and (to float rounding) the same logits as
    transformers' SDPA."""
    torch.manual_seed(0)
    model = LlamaForCausalLM._from_config(
        config, attn_implementation=attention_implementation(torch.device("cpu"))
    )
    model = model.eval().to(dtype)
    prompt = torch.randint(3, 97, (2, 9), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(prompt)
    mask[1, :4] = 0  # the second document's prompt is 4 tokens shorter: padded on the left
    ours = torch.stack(greedy(model, GrowingCache(config), prompt, 12, mask)[0])
    model.set_attn_implementation("sdpa")
    theirs = torch.stack(greedy(model, GrowingCache(config), prompt, 12, mask)[0])
    model.set_attn_implementation(ATTENTION)
    assert torch.equal(ours.argmax(-1), theirs.argmax(-1))
    tolerance = 1e-5 if dtype == torch.float32 else 0.1
    torch.testing.assert_close(ours, theirs, rtol=tolerance, atol=tolerance)
