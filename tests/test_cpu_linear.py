"""bfloat16 Linear layers packed for oneDNN on CPUs: the same outputs as transformers' layers, used by the
engine where the model computes in bfloat16 on a CPU, and never on float32 or int8-dynamic layers; torchao's
weight-only int8 layers (BAYOU_QUANTIZE=int8) given to torch's int8-weight kernel: torchao's outputs, bit for
bit where they keep its arithmetic, within a rounding of it where the kernel runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from extractor.model import load_model
from extractor.model.cpu_linear import Int8WeightLinear, PackedLinear, can_pack, pack_linears

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


def test_float32_and_int8_dynamic_layers_are_left_alone(tiny_checkpoint: Path) -> None:
    from extractor.model.quantize import quantize

    model = load_model(tiny_checkpoint, dtype="float32").model
    assert pack_linears(model) == 0
    quantize(model, "int8-dynamic")  # bayou's int8 modules, float32 in and out
    assert pack_linears(model) == 0


def _torchao_int8(module: torch.nn.Module) -> torch.nn.Module:
    pytest.importorskip("torchao", reason="BAYOU_QUANTIZE=int8 needs torchao (the cpu-int8 extra)")
    from extractor.model.quantize import _torchao

    config, quantize_ = _torchao()
    quantize_(module, config())
    return module


@pytest.mark.parametrize("bias", [True, False])
# 48 and 64 columns: the kernel's width (a multiple of 16); 40 and 37: the widened weight for any rows
@pytest.mark.parametrize("features", [(64, 80), (48, 24), (40, 24), (37, 19)])
@pytest.mark.parametrize("shape", [(1,), (3,), (2, 4), (9,), (2, 5)])
def test_an_int8_weight_layer_gives_torchaos_outputs(
    bias: bool, features: tuple[int, int], shape: tuple[int, ...]
) -> None:
    torch.manual_seed(0)
    columns, rows_out = features
    plain = torch.nn.Linear(columns, rows_out, bias=bias).to(torch.bfloat16).requires_grad_(False)
    holder = _torchao_int8(torch.nn.Sequential(plain))
    theirs = holder[0]
    ours = Int8WeightLinear(theirs)
    inputs = torch.randn(*shape, columns).to(torch.bfloat16)
    with torch.inference_mode():
        expected, got = theirs(inputs), ours(inputs)
    assert got.shape == expected.shape == (*shape, rows_out) and got.dtype == torch.bfloat16
    rows = inputs.numel() // columns
    if rows > Int8WeightLinear.KERNEL_ROWS or columns % Int8WeightLinear.KERNEL_COLUMNS:
        assert torch.equal(got, expected)  # torchao's arithmetic: the widened weight, then the scales
    else:  # torch's kernel: the scales applied inside, one rounding to bfloat16 instead of two
        scale = expected.abs().max().item()
        assert (got.float() - expected.float()).abs().max().item() <= 0.02 * scale
    state = ours.state_dict()  # int8 values and scales are the layer's state (its weight memory)
    assert state["qdata"].dtype == torch.int8 and state["qdata"].shape == (rows_out, columns)
    assert state["scale"].shape == (rows_out,)


@needs_bf16_onednn
def test_int8_weights_go_to_the_kernel_and_the_layers_left_in_bfloat16_are_packed(
    tiny_checkpoint: Path,
) -> None:
    from extractor.model.quantize import quantize

    pytest.importorskip("torchao", reason="BAYOU_QUANTIZE=int8 needs torchao (the cpu-int8 extra)")
    torchao_model = load_model(tiny_checkpoint, dtype="bfloat16").model
    quantize(torchao_model, "int8")
    model = load_model(tiny_checkpoint, dtype="bfloat16").model
    towers = quantize(model, "int8")  # torchao's int8 weights (tensor subclasses) in the towers
    # the head and the projector stay bfloat16 under int8 weight-only: packed
    projector = sum(type(m) is torch.nn.Linear for m in model.model.multi_modal_projector.modules())
    assert pack_linears(model) == towers + 1 + projector
    for tower in (model.model.language_model, model.model.vision_tower):
        layers = [m for m in tower.modules() if isinstance(m, (torch.nn.Linear, Int8WeightLinear))]
        assert layers and all(isinstance(m, Int8WeightLinear) for m in layers)
    assert isinstance(model.lm_head, PackedLinear)
    ids = torch.randint(3, 200, (1, 24), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = torchao_model(input_ids=ids).logits
        got = model(input_ids=ids).logits
        # one token behind the prompt: the kernel's path
        step = model(input_ids=ids[:, :1]).logits
        torchao_step = torchao_model(input_ids=ids[:, :1]).logits
    assert torch.equal(got, expected)  # 24 rows: torchao's arithmetic, bit for bit
    scale = torchao_step.abs().max().item()
    assert (step.float() - torchao_step.float()).abs().max().item() <= 0.05 * scale


@needs_bf16_onednn
def test_without_the_int8_kernel_torchaos_layers_stay_as_they_are(tiny_checkpoint: Path) -> None:
    from extractor.model.quantize import quantize

    pytest.importorskip("torchao", reason="BAYOU_QUANTIZE=int8 needs torchao (the cpu-int8 extra)")
    model = load_model(tiny_checkpoint, dtype="bfloat16").model
    towers = quantize(model, "int8")
    projector = sum(type(m) is torch.nn.Linear for m in model.model.multi_modal_projector.modules())
    # only the bfloat16 layers (head and projector) are packed; the bench's int8-torchao variant
    assert pack_linears(model, int8_kernel=False) == 1 + projector
    assert not any(isinstance(m, Int8WeightLinear) for m in model.modules())
    for tower in (model.model.language_model, model.model.vision_tower):
        towers -= sum(type(m) is torch.nn.Linear for m in tower.modules())
    assert towers == 0  # every quantised layer is still torchao's


@needs_bf16_onednn
@pytest.mark.parametrize(
    ("quantize", "layer"),
    # BAYOU_DTYPE=bfloat16 named: auto is float32 on a CPU whose oneDNN has bfloat16 kernels but whose
    # instructions lack bfloat16 (an Ice Lake Xeon)
    [("none", PackedLinear), ("int8", Int8WeightLinear)],
)
def test_the_engine_lays_out_a_bfloat16_cpu_models_layers(
    tiny_checkpoint: Path, monkeypatch, quantize: str, layer: type[torch.nn.Module]
) -> None:
    if quantize == "int8":
        pytest.importorskip("torchao", reason="BAYOU_QUANTIZE=int8 needs torchao (the cpu-int8 extra)")
    from PIL import Image

    import bayou.engines as engines
    from bayou.settings import Settings
    from extractor.engine import EngineRequest

    monkeypatch.setenv("BAYOU_MODEL_800M", str(tiny_checkpoint))
    monkeypatch.setenv("BAYOU_DEVICE", "cpu")
    monkeypatch.setenv("BAYOU_DTYPE", "bfloat16")
    monkeypatch.setenv("BAYOU_QUANTIZE", quantize)
    engine = engines.build_engine("h2ovl-800m", Settings())
    assert any(isinstance(m, layer) for m in engine.loaded.model.modules())
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
