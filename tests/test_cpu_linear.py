"""bfloat16 Linear layers packed for oneDNN on CPUs: the same outputs as transformers' layers, used by the
engine where the model computes in bfloat16 on a CPU, and never on float32 or quantised layers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from extractor.model import load_model
from extractor.model.cpu_linear import PackedLinear, can_pack, pack_linears

needs_bf16_onednn = pytest.mark.skipif(
    not can_pack(torch.device("cpu")),
    reason="this CPU's oneDNN has no bfloat16 kernels (no AVX-512 BF16 or AMX): nothing is packed here",
)


@needs_bf16_onednn
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 48), (7, 48), (2, 5, 48)])
def test_a_packed_layer_gives_the_layers_outputs_bit_for_bit(bias: bool, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(48, 80, bias=bias).to(torch.bfloat16).requires_grad_(False)
    inputs = torch.randn(*shape).to(torch.bfloat16)
    packed = PackedLinear(linear)
    with torch.inference_mode():
        assert torch.equal(packed(inputs), F.linear(inputs, linear.weight, linear.bias))
    assert (packed.in_features, packed.out_features) == (48, 80)


@needs_bf16_onednn
def test_a_bfloat16_model_is_packed_and_answers_the_same(tiny_checkpoint: Path) -> None:
    plain = load_model(tiny_checkpoint, dtype="bfloat16").model
    model = load_model(tiny_checkpoint, dtype="bfloat16").model
    linears = sum(type(m) is torch.nn.Linear for m in model.modules())
    assert pack_linears(model) == linears > 0
    assert not any(type(m) is torch.nn.Linear for m in model.modules())
    config = model.config
    generator = torch.Generator().manual_seed(0)
    size = config.vision_config.image_size
    pixels = torch.randn(
        2, 3, *(size if isinstance(size, (list, tuple)) else (size, size)), generator=generator
    )
    ids = torch.randint(3, 200, (1, 24), generator=generator)
    with torch.inference_mode():
        for network in (plain, model):
            network.outputs = (
                network.model.get_image_features(pixel_values=pixels.bfloat16()).pooler_output,
                network(input_ids=ids).logits,
            )
    for ours, theirs in zip(model.outputs, plain.outputs, strict=True):
        assert torch.equal(ours, theirs)


def test_float32_and_quantised_layers_are_left_alone(tiny_checkpoint: Path) -> None:
    model = load_model(tiny_checkpoint, dtype="float32").model
    assert pack_linears(model) == 0
    pytest.importorskip("torchao", reason="BAYOU_QUANTIZE=int8 needs torchao (the cpu-int8 extra)")
    from extractor.model.quantize import quantize

    quantized = load_model(tiny_checkpoint, dtype="bfloat16").model
    quantize(quantized, "int8")  # torchao's int8 weights (tensor subclasses) in the towers
    # the head and the projector stay bfloat16 under int8 weight-only: the layers left to pack
    projector = sum(type(m) is torch.nn.Linear for m in quantized.model.multi_modal_projector.modules())
    assert pack_linears(quantized) == (1 + projector if can_pack(torch.device("cpu")) else 0)
    for tower in (quantized.model.language_model, quantized.model.vision_tower):
        assert not any(isinstance(m, PackedLinear) for m in tower.modules())


@needs_bf16_onednn
def test_the_engine_packs_a_bfloat16_cpu_model(tiny_checkpoint: Path, monkeypatch) -> None:
    from PIL import Image

    import bayou.engines as engines
    from bayou.settings import Settings
    from extractor.engine import EngineRequest

    monkeypatch.setenv("BAYOU_MODEL_800M", str(tiny_checkpoint))
    monkeypatch.setenv("BAYOU_DEVICE", "cpu")
    monkeypatch.setenv("BAYOU_DTYPE", "bfloat16")
    engine = engines.build_engine("h2ovl-800m", Settings())
    assert any(isinstance(m, PackedLinear) for m in engine.loaded.model.modules())
    (output,) = engine.run(
        [EngineRequest(images=[Image.new("RGB", (300, 400), "white")], question="total?", max_new_tokens=8)]
    )
    assert output.generated_tokens == 8


@needs_bf16_onednn
def test_a_head_tied_to_the_embeddings_is_not_packed() -> None:
    embeddings = torch.nn.Embedding(64, 48).to(torch.bfloat16)
    head = torch.nn.Linear(48, 64, bias=False).to(torch.bfloat16)
    head.weight = embeddings.weight  # tied: packing would hold the weight twice
    model = torch.nn.ModuleDict(
        {"embed": embeddings, "head": head, "proj": torch.nn.Linear(48, 48).to(torch.bfloat16)}
    ).requires_grad_(False)
    assert pack_linears(model) == 1
    assert model["head"] is head and isinstance(model["proj"], PackedLinear)
