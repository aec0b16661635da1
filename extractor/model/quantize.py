"""Optional int8 weights for a loaded model (BAYOU_QUANTIZE=int8), through torchao.

Weight-only int8: every Linear layer of the language model and the vision tower keeps its weight as int8
with one scale per output channel, and computes in the model's dtype. Weights take a quarter of their
float32 memory (half of bfloat16), and decoding, which streams every weight once per token, reads that
much less. The projector and the language model's head stay in full precision: they are small, and the
head's logits are the confidence scores. Needs torchao (`pip install -e ".[cpu-int8]"`), which quantises;
on a CPU with bfloat16 kernels the engine then hands the layers to torch's own int8-weight kernel
(extractor/model/cpu_linear.py: torchao's CPU path widens every weight on every call).
"""

from __future__ import annotations

import importlib.util
import logging

import torch

from extractor.errors import ConfigurationError
from extractor.model.int8_dynamic import int8_dynamic
from extractor.precisions import QUANTIZE_MODES


def load_dtype(mode: str, dtype: str, device: torch.device) -> str:
    """The BAYOU_DTYPE to load the model in before quantising it as `mode`: int8-dynamic takes and gives
    float32 and has CPU kernels only, so it refuses anything else rather than fail at the first document."""
    if mode != "int8-dynamic":
        return dtype
    if device.type != "cpu":
        raise ConfigurationError(
            f"BAYOU_QUANTIZE=int8-dynamic runs on CPUs only (torch's x86 kernels), not {device}; "
            "use int8 or none there"
        )
    if dtype not in ("auto", "float32"):
        raise ConfigurationError(
            f"BAYOU_QUANTIZE=int8-dynamic computes in float32: BAYOU_DTYPE={dtype} cannot go with it "
            "(set BAYOU_DTYPE=auto or float32)"
        )
    return "float32"


TORCHAO_MISSING = (
    "BAYOU_QUANTIZE=int8 needs torchao: pip install -e '.[cpu-int8]' (or set BAYOU_QUANTIZE=none)"
)


def check_available(mode: str) -> None:
    """At a worker's start, importing nothing: the library `mode` quantises with is installed (torchao for
    int8, an optional extra the Docker image leaves out unless built with EXTRAS=[cpu-int8])."""
    if mode == "int8" and importlib.util.find_spec("torchao") is None:
        raise ConfigurationError(TORCHAO_MISSING)


def quantize(model: torch.nn.Module, mode: str) -> int:
    """Quantise `model` in place as `mode` asks; returns how many Linear layers changed (0 for none)."""
    if mode == "none":
        return 0
    if mode == "int8":
        return quantize_int8(model)
    if mode == "int8-dynamic":
        return quantize_int8_dynamic(model)
    raise ConfigurationError(f"BAYOU_QUANTIZE={mode}: unknown; use {', '.join(QUANTIZE_MODES)}")


def quantize_int8(model: torch.nn.Module) -> int:
    """int8 weight-only quantisation of the Linear layers of `model`'s language model and vision tower."""
    Int8WeightOnlyConfig, quantize_ = _torchao()  # noqa: N806 - a class, named as torchao names it
    inner = model.model  # InternVLForConditionalGeneration: .model holds the towers, .lm_head the head
    count = 0
    for part in (inner.language_model, inner.vision_tower):
        count += sum(isinstance(m, torch.nn.Linear) for m in part.modules())
        quantize_(part, Int8WeightOnlyConfig())
    return count


def quantize_int8_dynamic(model: torch.nn.Module) -> int:
    """int8 weights per channel and int8 activations per token (extractor/model/int8_dynamic.py: torch's
    own x86 kernel, float32 in and out), in the towers and the language model's head: decoding reads the
    head's weights once per token, and in float32 they were a quarter of what the 0.8B's decode step reads.
    Its logits move by about as much as the towers' quantisation moves them already (bench/cpu_precision.py
    measures both)."""
    inner = model.model
    count = 0
    for name in ("language_model", "vision_tower"):
        part = getattr(inner, name)
        count += sum(isinstance(m, torch.nn.Linear) for m in part.modules())
        setattr(inner, name, int8_dynamic(part))
    model.lm_head = int8_dynamic(model.lm_head)
    return count + 1


def _torchao():
    # torchao logs a warning for each of its CUDA-only kernel libraries a CPU build cannot load: noise here
    logger = logging.getLogger("torchao")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        from torchao.quantization import Int8WeightOnlyConfig, quantize_
    except ImportError as exc:
        raise ConfigurationError(TORCHAO_MISSING) from exc
    finally:
        logger.setLevel(level)
    return Int8WeightOnlyConfig, quantize_
