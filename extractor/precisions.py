"""The precisions a model can be loaded in, by name: BAYOU_DTYPE's choices and BAYOU_QUANTIZE's modes.

Names only, without torch, so that the settings can offer exactly these choices without importing it;
`extractor.model.device` maps the dtype names to torch's dtypes and `extractor.model.quantize` applies
the modes."""

from __future__ import annotations

# in the order the settings' error message lists them, after `auto`
DTYPE_NAMES = ("float32", "bfloat16", "float16")
# none: the checkpoint's weights as loaded; int8: weight-only (torchao); int8-dynamic: weights and
# activations (torch's x86 kernels)
QUANTIZE_MODES = ("none", "int8", "int8-dynamic")
