"""BAYOU_QUANTIZE=int8-dynamic's Linear layers: int8 weights per output channel, each input row quantised on
its own scale, so that one large token neither coarsens the others nor ties a document to its batch."""

from __future__ import annotations

import pytest
import torch

from extractor.model.int8_dynamic import BLOCK_ROWS, Int8DynamicLinear, int8_dynamic


def _layer(inputs: int = 256, outputs: int = 192, bias: bool = True) -> torch.nn.Linear:
    torch.manual_seed(0)
    return torch.nn.Linear(inputs, outputs, bias=bias)


def _rows(count: int, width: int = 256, seed: int = 1) -> torch.Tensor:
    return torch.randn(count, width, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("bias", [True, False])
@torch.inference_mode()
def test_one_large_token_leaves_the_others_precision_alone(bias: bool) -> None:
    layer = _layer(bias=bias)
    rows = _rows(64)
    rows[0] *= 30  # a token whose activations are 30× the rest's, as language models carry at a few tokens
    expected, got = layer(rows), Int8DynamicLinear(layer)(rows)
    others = (got[1:] - expected[1:]).abs().max().item()
    # with one scale for the whole input (torch's quantize_dynamic) the other rows were off by ~1/3 of this
    # scale; with a scale per row they are off by ~1/60
    assert others < 0.03 * expected[1:].abs().max().item()
    assert (got[0] - expected[0]).abs().max().item() < 0.03 * expected[0].abs().max().item()


@torch.inference_mode()
def test_a_rows_result_does_not_depend_on_the_rows_beside_it() -> None:
    quantised = Int8DynamicLinear(_layer())
    document = _rows(BLOCK_ROWS + 40, seed=2)  # across a block boundary
    other = _rows(30, seed=3) * 50  # another document of the batch, much larger
    alone = quantised(document)
    together = quantised(torch.cat([other, document]))[30:]
    assert torch.equal(alone, together)
    batched = quantised(torch.stack([document[:10], other[:10]]))  # (documents, tokens, features)
    assert batched.shape == (2, 10, 192)
    assert torch.equal(batched[0], alone[:10])


@torch.inference_mode()
def test_each_output_channel_has_its_own_weight_scale() -> None:
    layer = _layer(bias=False)
    layer.weight.data[0] *= 100  # one output channel's weights 100× the others'
    rows = _rows(16)
    expected, got = layer(rows), Int8DynamicLinear(layer)(rows)
    # one scale for the whole matrix would leave the other channels' weights a few int8 steps each
    assert (got[:, 1:] - expected[:, 1:]).abs().max().item() < 0.03 * expected[:, 1:].abs().max().item()


@torch.inference_mode()
def test_a_single_row_zero_rows_and_shapes() -> None:
    layer = _layer()
    quantised = Int8DynamicLinear(layer)
    rows = _rows(8)
    rows[3] = 0
    many = quantised(rows)
    assert torch.equal(many[3], layer.bias)  # a row of zeros: exactly the bias, no division by zero
    single = quantised(rows[5:6].reshape(1, 1, 256))  # one document's decoding step
    assert single.shape == (1, 1, 192)
    scale = layer(rows[5]).abs().max().item()
    assert (single.reshape(-1) - layer(rows[5])).abs().max().item() < 0.03 * scale
    # decoded alone or in a batch, the same row reads the same
    assert torch.equal(single.reshape(-1), many[5])


def test_int8_dynamic_replaces_every_linear_in_place() -> None:
    nested = torch.nn.Sequential(_layer(), torch.nn.ReLU(), torch.nn.Sequential(_layer(192, 8)))
    assert int8_dynamic(nested) is nested
    assert [type(m) for m in nested.modules() if isinstance(m, (torch.nn.Linear, Int8DynamicLinear))] == [
        Int8DynamicLinear,
        Int8DynamicLinear,
    ]
    lone = int8_dynamic(_layer())
    assert isinstance(lone, Int8DynamicLinear) and lone.out_features == 192
    assert lone.weight_bytes() == 256 * 192 + 192 * 8
