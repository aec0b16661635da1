"""GrowingCache: the same keys, values and logits as transformers' DynamicCache, without a copy per step."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaForCausalLM
from transformers.cache_utils import DynamicCache

from extractor import kv_cache
from extractor.kv_cache import GrowingCache, GrowingLayer
from tests.small_llama import greedy, small_llama_config


@pytest.fixture(scope="module")
def model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(small_llama_config()).eval()


def test_same_logits_as_dynamic_cache_across_growth_and_batch_select(model, monkeypatch) -> None:
    monkeypatch.setattr(kv_cache, "BLOCK_TOKENS", 3)  # the buffers grow several times in 30 steps
    prompt = torch.randint(0, 97, (2, 7), generator=torch.Generator().manual_seed(1))
    expected, _ = greedy(model, DynamicCache(), prompt, 30, keep_after=12)
    got, cache = greedy(model, GrowingCache(model.config), prompt, 30, keep_after=12)
    assert isinstance(cache, GrowingCache)
    assert all(isinstance(layer, GrowingLayer) for layer in cache.layers)
    assert cache.get_seq_length() == 7 + 30
    for step, (a, b) in enumerate(zip(expected, got, strict=True)):
        assert torch.equal(a, b), f"step {step} differs"


def test_a_decode_step_writes_in_place_until_the_buffer_is_full(model) -> None:
    cache = GrowingCache(model.config)
    prompt = torch.randint(0, 97, (1, 300))
    with torch.inference_mode():
        out = model(input_ids=prompt, cache=cache, use_cache=True)
        layer = out.cache.layers[0]
        # room for BLOCK_TOKENS more, zero-filled (bfloat16 attention reads it, weighted 0)
        assert layer.capacity() == 300 + kv_cache.BLOCK_TOKENS
        assert not layer._key_buffer[:, :, 300:].any() and not layer._value_buffer[:, :, 300:].any()
        buffer = layer.keys.data_ptr()
        for position in range(300, layer.capacity()):
            out = model(input_ids=torch.tensor([[5]]), cache=out.cache, use_cache=True)
            assert layer.keys.data_ptr() == buffer, f"copied at position {position}"
        assert layer.get_seq_length() == layer.capacity()
        out = model(input_ids=torch.tensor([[5]]), cache=out.cache, use_cache=True)
        assert layer.keys.data_ptr() != buffer  # full: moved once to a larger buffer
        assert layer.capacity() > layer.get_seq_length()


def test_keys_replaced_by_a_parent_method_are_taken_back_into_a_buffer(model) -> None:
    prompt = torch.randint(0, 97, (2, 9), generator=torch.Generator().manual_seed(2))
    expected, _ = greedy(model, DynamicCache(), prompt, 1)
    with torch.inference_mode():
        cache = GrowingCache(model.config)
        model(input_ids=prompt, cache=cache, use_cache=True)
        cache.reorder_cache(torch.tensor([1, 0]))  # DynamicLayer's: new tensors, outside the buffers
        cache.reorder_cache(torch.tensor([1, 0]))
        cache.crop(-2)
        logits = model(input_ids=prompt[:, 7:], cache=cache, use_cache=True).logits[:, -1]
    assert torch.allclose(logits, expected[0], atol=1e-5)
    assert cache.get_seq_length() == 9
    layer = cache.layers[0]
    assert layer.keys.data_ptr() == layer._key_buffer.data_ptr()
