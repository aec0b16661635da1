"""CPU speed settings: `auto` precision follows the hardware, int8 weights (torchao), threads from the
cores this process was given."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest
import torch

from extractor.errors import BayouError, ConfigurationError
from extractor.model import device as device_module
from extractor.model.device import available_cores, configure_threads, cpu_flags, resolve_dtype
from extractor.model.int8_dynamic import Int8DynamicLinear

CPUINFO = """processor\t: 0
vendor_id\t: {vendor}
flags\t\t: fpu sse sse2 avx2 {extra}
bugs\t\t: sysret_ss_attrs

processor\t: 1
flags\t\t: fpu
"""


@pytest.fixture
def native_bf16(monkeypatch: pytest.MonkeyPatch):
    def set_to(value: bool) -> None:
        monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: value)

    return set_to


def test_cpu_flags_are_read_from_the_first_cpu(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(CPUINFO.format(vendor="AuthenticAMD", extra="avx512f avx512_bf16"))
    assert {"avx2", "avx512_bf16"} <= cpu_flags(info)
    assert cpu_flags(tmp_path / "absent") == set()  # not Linux: no flags, float32


@pytest.mark.parametrize(
    ("extra", "native"),
    [("avx512f avx512_bf16", True), ("amx_tile amx_bf16", True), ("avx512f", False), ("", False)],
)
def test_native_bf16_means_avx512_bf16_or_amx(tmp_path: Path, extra: str, native: bool) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(CPUINFO.format(vendor="GenuineIntel", extra=extra))
    assert device_module.cpu_has_native_bf16.__wrapped__(info) is native


def test_auto_precision_follows_the_hardware(native_bf16) -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    native_bf16(True)
    assert resolve_dtype("auto", cpu) is torch.bfloat16
    native_bf16(False)
    assert resolve_dtype("auto", cpu) is torch.float32
    assert resolve_dtype(None, cpu) is torch.float32
    assert resolve_dtype("auto", cuda) is torch.bfloat16  # every CUDA GPU bayou runs on has bf16
    assert resolve_dtype("bfloat16", cpu) is torch.bfloat16  # asked for: given, native or not
    with pytest.raises(BayouError, match="unknown dtype 'int4'"):
        resolve_dtype("int4", cpu)


def test_cores_are_the_affinity_capped_by_a_cgroup_quota(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    quota = tmp_path / "cpu.max"
    assert available_cores(tmp_path / "absent") == affinity
    quota.write_text("max 100000\n")
    assert available_cores(quota) == affinity
    quota.write_text("50000 100000\n")  # docker --cpus 0.5
    assert available_cores(quota) == 1
    quota.write_text(f"{(affinity + 8) * 100000} 100000\n")  # a quota above the affinity: the affinity
    assert available_cores(quota) == affinity


def test_threads_setting_sizes_torchs_pool() -> None:
    before = torch.get_num_threads()
    try:
        assert configure_threads(1) == 1 and torch.get_num_threads() == 1
        assert configure_threads(None) == available_cores() == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def test_settings_refuse_an_unknown_dtype_or_quantisation(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from bayou.settings import Settings

    monkeypatch.setenv("BAYOU_DTYPE", "int4")
    with pytest.raises(ValidationError, match="dtype"):
        Settings()
    monkeypatch.setenv("BAYOU_DTYPE", "bfloat16")
    monkeypatch.setenv("BAYOU_QUANTIZE", "int4")
    with pytest.raises(ValidationError, match="quantize"):
        Settings()
    monkeypatch.setenv("BAYOU_THREADS", "0")
    monkeypatch.setenv("BAYOU_QUANTIZE", "int8")
    with pytest.raises(ValidationError, match="threads"):
        Settings()


def test_settings_offer_the_dtypes_and_modes_the_loader_knows_in_the_same_words() -> None:
    from pydantic import ValidationError

    from bayou.settings import Settings
    from extractor.model.device import DTYPES
    from extractor.model.quantize import QUANTIZE_MODES

    for dtype in ("auto", *DTYPES):
        assert Settings(dtype=dtype).dtype == dtype
    for mode in QUANTIZE_MODES:
        assert Settings(quantize=mode).quantize == mode
    # the message a user sees for an unknown value, as it read when the choices were written out
    with pytest.raises(ValidationError) as dtype_error:
        Settings(dtype="int4")
    assert "Input should be 'auto', 'float32', 'bfloat16' or 'float16'" in str(dtype_error.value)
    with pytest.raises(ValidationError) as mode_error:
        Settings(quantize="int4")
    assert "Input should be 'none', 'int8' or 'int8-dynamic'" in str(mode_error.value)


def _towers_linear(model: torch.nn.Module) -> list[torch.nn.Module]:
    inner = model.model
    return [m for part in (inner.language_model, inner.vision_tower) for m in part.modules() if _is_linear(m)]


def _is_linear(module: torch.nn.Module) -> bool:
    return isinstance(module, (torch.nn.Linear, Int8DynamicLinear))


def _logits(model: torch.nn.Module) -> torch.Tensor:
    torch.manual_seed(0)
    with torch.inference_mode():
        return model(input_ids=torch.randint(10, 200, (1, 24))).logits


@pytest.mark.parametrize("mode", ["int8", "int8-dynamic"])
def test_int8_quantises_the_towers_and_int8_dynamic_the_head_too(tiny_checkpoint: Path, mode: str) -> None:
    if mode == "int8":
        pytest.importorskip("torchao")
    from extractor.model import load_model
    from extractor.model.quantize import quantize

    model = load_model(tiny_checkpoint, device="cpu", dtype="float32").model
    before = _logits(model)
    linear_layers = len(_towers_linear(model))
    vocabulary = model.lm_head.out_features
    if mode == "int8":  # the same modules, their weights int8 tensors; the head stays float
        assert quantize(model, mode) == linear_layers > 0
        assert all(type(m.weight).__name__ == "Int8Tensor" for m in _towers_linear(model))
        assert type(model.lm_head.weight) is torch.nn.Parameter
    else:  # bayou's int8-dynamic Linear modules in their place, the head's too
        assert quantize(model, mode) == linear_layers + 1 > 1
        assert not any(isinstance(m, torch.nn.Linear) for m in _towers_linear(model))
        assert len(_towers_linear(model)) == linear_layers
        assert isinstance(model.lm_head, Int8DynamicLinear)
        assert model.lm_head.out_features == vocabulary  # what the generator sizes its grammar masks by
    after = _logits(model)
    # int8 weights (and activations): close to float32, not equal to it
    difference = (after - before).abs().max().item()
    assert 0 < difference < 0.1 * before.abs().max().item()


def test_an_unknown_quantisation_names_the_setting() -> None:
    from extractor.model.quantize import quantize

    assert quantize(torch.nn.Linear(2, 2), "none") == 0
    with pytest.raises(ConfigurationError, match="BAYOU_QUANTIZE=int4"):
        quantize(torch.nn.Linear(2, 2), "int4")


def test_int8_dynamic_loads_float32_on_a_cpu_and_refuses_the_rest() -> None:
    from extractor.model.quantize import load_dtype

    cpu = torch.device("cpu")
    assert load_dtype("int8-dynamic", "auto", cpu) == "float32"  # also where auto would be bfloat16
    assert load_dtype("int8", "auto", cpu) == "auto"
    with pytest.raises(ConfigurationError, match="BAYOU_DTYPE=bfloat16 cannot go with it"):
        load_dtype("int8-dynamic", "bfloat16", cpu)
    with pytest.raises(ConfigurationError, match="CPUs only"):
        load_dtype("int8-dynamic", "auto", torch.device("cuda"))


def test_the_transformers_builder_applies_threads_and_int8(tiny_checkpoint: Path, monkeypatch) -> None:
    import bayou.engines as engines
    from bayou.settings import Settings

    monkeypatch.setenv("BAYOU_MODEL_800M", str(tiny_checkpoint))
    monkeypatch.setenv("BAYOU_QUANTIZE", "int8-dynamic")
    monkeypatch.setenv("BAYOU_THREADS", "1")
    monkeypatch.setenv("BAYOU_DEVICE", "cpu")
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: True)  # auto alone would be bfloat16
    for name in device_module.ONEDNN_CACHE_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    before = torch.get_num_threads()
    try:
        engine = engines.build_engine("h2ovl-800m", Settings())
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    for name in device_module.ONEDNN_CACHE_SETTINGS:  # set for the worker's process before its model runs
        assert os.environ[name] == str(device_module.ONEDNN_CACHE_ENTRIES)
    assert engine.loaded.dtype is torch.float32
    down = engine.loaded.model.model.language_model.layers[0].mlp.down_proj
    assert isinstance(down, Int8DynamicLinear)
    assert engine.name == "h2ovl-800m"
    # the quantised towers and head read a page and write schema-valid JSON
    from PIL import Image

    from extractor.engine import EngineRequest
    from extractor.schemas import load_schema

    schema = load_schema("receipt")
    page = Image.new("RGB", (300, 500), "white")
    (output,) = engine.run(
        [EngineRequest(images=[page], question="receipt", schema=schema, max_new_tokens=400)]
    )
    jsonschema.validate(json.loads(output.text), schema)
