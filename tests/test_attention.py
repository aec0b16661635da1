"""bayou's CPU decoding step for attention: SDPA's results, in float32, for one new token per document."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from extractor.kv_cache import GrowingCache
from extractor.model.attention import ATTENTION, cache_dtype, cpu_sdpa_attention, one_query_attention
from extractor.model.loader import attention_implementation


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
    torch.testing.assert_close(one_query_attention(query, key, value, allowed).double(), expected)
    additive = torch.zeros(2, 1, 1, 37).masked_fill(~allowed, float("-inf"))
    torch.testing.assert_close(one_query_attention(query, key, value, additive).double(), expected)
    # padding must matter: the padded row differs from attending everything
    unmasked = _reference(query, key, value)
    assert not torch.allclose(unmasked[1], expected[1], atol=1e-3)


def test_bfloat16_query_against_a_float32_cache_computes_in_float32() -> None:
    query, key, value = _inputs()
    query, key, value = query.bfloat16(), key.bfloat16().float(), value.bfloat16().float()
    got = one_query_attention(query, key, value, None, scaling=0.25)
    assert got.dtype == torch.bfloat16
    expected = F.scaled_dot_product_attention(
        query.double(),
        key.double().repeat_interleave(4, 1),
        value.double().repeat_interleave(4, 1),
        scale=0.25,
    ).transpose(1, 2)
    torch.testing.assert_close(got.double(), expected, rtol=1e-2, atol=1e-2)  # the output's bfloat16 rounding


def test_a_prompt_goes_through_sdpa_even_against_a_float32_cache() -> None:
    module = torch.nn.Module()
    module.num_key_value_groups = 4
    module.is_causal = True
    generator = torch.Generator().manual_seed(3)
    query = torch.randn(1, 8, 5, 16, generator=generator).bfloat16()
    key = torch.randn(1, 2, 5, 16, generator=generator)
    value = torch.randn(1, 2, 5, 16, generator=generator)
    got, weights = cpu_sdpa_attention(module, query, key, value, None, scaling=0.25)
    assert weights is None and got.dtype == torch.bfloat16 and got.shape == (1, 5, 8, 16)
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    expected = _reference(query.float(), key.bfloat16().float(), value.bfloat16().float(), causal)
    torch.testing.assert_close(got.double(), expected, rtol=2e-2, atol=2e-2)


def test_the_cache_keeps_float32_for_a_bfloat16_model_on_cpu_only() -> None:
    cpu = torch.device("cpu")
    assert cache_dtype(cpu, torch.bfloat16) is torch.float32
    assert cache_dtype(cpu, torch.float32) is None
    assert cache_dtype(torch.device("cuda"), torch.bfloat16) is None
    assert attention_implementation(cpu) == ATTENTION


@pytest.fixture(scope="module")
def config() -> LlamaConfig:
    return LlamaConfig(
        vocab_size=97,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
    )


def _greedy_logits(model, cache, prompt, mask, steps):
    seen = []
    with torch.inference_mode():
        out = model(input_ids=prompt, attention_mask=mask, cache=cache, use_cache=True)
        for _ in range(steps):
            logits = out.logits[:, -1].float()
            seen.append(logits)
            token = logits.argmax(-1, keepdim=True)
            mask = torch.cat([mask, torch.ones_like(token)], dim=-1)
            out = model(input_ids=token, attention_mask=mask, cache=out.cache, use_cache=True)
    return torch.stack(seen)


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
    ours = _greedy_logits(
        model, GrowingCache(config, cache_dtype(torch.device("cpu"), dtype)), prompt, mask, 12
    )
    model.set_attn_implementation("sdpa")
    theirs = _greedy_logits(model, GrowingCache(config), prompt, mask, 12)
    model.set_attn_implementation(ATTENTION)
    assert torch.equal(ours.argmax(-1), theirs.argmax(-1))
    tolerance = 1e-5 if dtype == torch.float32 else 0.1
    torch.testing.assert_close(ours, theirs, rtol=tolerance, atol=tolerance)
