"""bfloat16 Linear layers on CPUs, their weights held in the form a CPU kernel reads directly: bfloat16 weights
laid out once in oneDNN's own format (`PackedLinear`), and torchao's int8 weights given to torch's own
int8-weight kernel (`Int8WeightLinear`).

A bfloat16 `F.linear` on a CPU goes to oneDNN, which reorders the weight into its blocked layout for the
kernel on every call. Reordered once at load (what torch's own compiler does with frozen CPU weights),
the same kernel reads it directly: on a 2-core AVX-512 BF16 EPYC, sixteen of the 0.8B language model's
Linear layers took 6.8 ms instead of 11.3 for one token, 7.9 instead of 11.9 for 16, and 502 instead of
572 ms for a 1,401-token prompt (5 interleaved rounds, medians), with bit for bit the same outputs; the
whole bfloat16 0.8B decodes a token in 60–70 ms instead of ~96 (docs/benchmarks.md). Used where the
model computes in bfloat16 on a CPU whose oneDNN has bfloat16 kernels; after quantisation, so that only
layers left in bfloat16 are packed.

torchao's weight-only int8 layers (BAYOU_QUANTIZE=int8) widen their whole weight to the input's dtype on
every call before multiplying: for one token that reads and writes the weight three times over, so a
bfloat16 0.8B decoded slower with int8 weights than without (97 against 51 ms a token; 45 with what
follows, docs/benchmarks.md). `Int8WeightLinear` keeps torchao's int8 values
and scales and, for a few rows (a decoding step), calls torch's `_weight_int8pack_mm`, which reads the int8
weight as it lies: 0.13–0.16 ms for one token through a 1,024–1,536 × 4,096 layer, against 0.5–0.9 with
the weight widened and 0.2–0.5 for the plain bfloat16 layer. From 16 rows on (a prompt, an image's tiles),
widening once per call is cheaper than that kernel (23 against 56 ms for one tile's 1,025 rows through
1,024 × 4,096), so those keep torchao's arithmetic: the product with the widened weight (exact: every int8
value is a bfloat16 value), its columns then scaled.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
from collections.abc import Callable

import torch


class PackedLinear(torch.nn.Module):
    """A bfloat16 Linear layer whose weight is held in oneDNN's layout (an opaque tensor, not a
    parameter: it takes no part in state_dict, `.to()` or gradients)."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), None)
        self.bias = None if linear.bias is None else torch.nn.Parameter(linear.bias.detach(), False)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(inputs, self.packed, self.bias, "none", [], "")

    def weight_bytes(self) -> int:
        return self.in_features * self.out_features * 2

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bfloat16 packed for oneDNN"


class Int8WeightLinear(torch.nn.Module):
    """A Linear layer with int8 weights and one scale per output channel (torchao's weight-only int8), for
    bfloat16 inputs on a CPU; the int8 values and scales are buffers, so they are the layer's state."""

    # up to this many rows the int8-weight kernel is faster than the widened weight's product (measured on
    # a 2-core AVX-512 BF16 EPYC: 0.47 against 0.60 ms at 8 rows, 0.87 against 0.75 at 16)
    KERNEL_ROWS = 8
    # the kernel reads the inputs in blocks of 16 columns: given other widths (torch 2.13) it returned
    # garbage (40) or crashed the process (37). Every published layer's width is a multiple of 64.
    KERNEL_COLUMNS = 16

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        weight = linear.weight
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.register_buffer("qdata", weight.qdata.detach().contiguous())
        # the kernel takes the scales in the input's dtype; torchao's own path converts them so per call
        self.register_buffer("scale", weight.scale.detach().reshape(-1).to(torch.bfloat16))
        self.bias = None if linear.bias is None else torch.nn.Parameter(linear.bias.detach(), False)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        rows = inputs.numel() // self.in_features
        if rows <= self.KERNEL_ROWS and self.in_features % self.KERNEL_COLUMNS == 0:
            flat = inputs.reshape(rows, self.in_features)
            output = torch.ops.aten._weight_int8pack_mm(flat, self.qdata, self.scale)
            output = output.reshape(*inputs.shape[:-1], self.out_features)
        else:
            output = torch.nn.functional.linear(inputs, self.qdata.to(inputs.dtype)).mul_(self.scale)
        return output if self.bias is None else output.add_(self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weights, bfloat16 in"


def can_pack(device: torch.device) -> bool:
    """Whether bfloat16 Linear layers on `device` can be packed: a CPU whose oneDNN has bfloat16 kernels."""
    return device.type == "cpu" and torch.backends.mkldnn.is_available() and _mkldnn_bf16()


def pack_linears(model: torch.nn.Module, int8_kernel: bool = True) -> int:
    """Replace every bfloat16 CPU `nn.Linear` in `model` with a PackedLinear, and every one with torchao's
    weight-only int8 weights and bfloat16 inputs with an Int8WeightLinear (unless `int8_kernel` is False:
    torchao's own path, to compare with); returns how many. A layer whose weight an embedding shares (a head
    tied to the input embeddings) is left as it is: packed, the weight would be held twice."""
    if not can_pack(torch.device("cpu")):
        return 0
    shared = {m.weight.data_ptr() for m in model.modules() if isinstance(m, torch.nn.Embedding)}

    def packed_form(layer: torch.nn.Linear) -> torch.nn.Module | None:
        if int8_kernel and _int8_weight_only(layer.weight):
            return Int8WeightLinear(layer)
        if _packable(layer.weight) and layer.weight.data_ptr() not in shared:
            return PackedLinear(layer)
        return None

    packed = replace_linears(model, packed_form)
    if packed:
        _return_freed_memory()
    return packed


def replace_linears(
    model: torch.nn.Module, convert: Callable[[torch.nn.Linear], torch.nn.Module | None]
) -> int:
    """Put `convert(layer)` in the place of every plain `nn.Linear` inside `model` for which it returns a
    module (None: the layer stays); returns how many were replaced."""
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Linear and (converted := convert(child)) is not None:
                setattr(parent, name, converted)
                replaced += 1
    return replaced


def _return_freed_memory() -> None:
    """Hand the unpacked weights' memory back to the system: glibc keeps freed blocks in its heap, and
    without this the process stays as large as with both copies (0.8B: 3.45 GB resident against 2.07)."""
    name = ctypes.util.find_library("c")
    with contextlib.suppress(OSError, AttributeError, TypeError):  # not glibc (musl, macOS): nothing to do
        ctypes.CDLL(name).malloc_trim(ctypes.c_size_t(0))


def _packable(weight: torch.Tensor) -> bool:
    # a plain tensor only: torchao's int8 weights are tensor subclasses that report bfloat16
    plain = type(weight.data) is torch.Tensor
    return (
        plain and weight.dtype == torch.bfloat16 and weight.device.type == "cpu" and not weight.requires_grad
    )


def _int8_weight_only(weight: torch.Tensor) -> bool:
    """torchao's weight-only int8 (Int8Tensor: no activation quantisation, one scale per output channel),
    bfloat16 in, on a CPU. Named, not imported: torchao is an optional extra."""
    if type(weight).__name__ != "Int8Tensor" or weight.device.type != "cpu" or weight.dtype != torch.bfloat16:
        return False
    rows, columns = weight.qdata.shape
    per_channel = list(getattr(weight, "block_size", [])) == [1, columns]
    weight_only = (
        getattr(weight, "act_quant_kwargs", 0) is None and getattr(weight, "act_pre_scale", 0) is None
    )
    return per_channel and weight_only and weight.scale.numel() == rows


def _mkldnn_bf16() -> bool:
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
