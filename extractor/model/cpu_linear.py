"""bfloat16 Linear layers on CPUs with their weights laid out once in oneDNN's own format.

A bfloat16 `F.linear` on a CPU goes to oneDNN, which reorders the weight into its blocked layout for the
kernel on every call. Reordered once at load (what torch's own compiler does with frozen CPU weights),
the same kernel reads it directly: on a 2-core AVX-512 BF16 EPYC, sixteen of the 0.8B language model's
Linear layers took 6.8 ms instead of 11.3 for one token, 7.9 instead of 11.9 for 16, and 502 instead of
572 ms for a 1,401-token prompt (5 interleaved rounds, medians), with bit for bit the same outputs; the
whole bfloat16 0.8B decodes a token in 60–70 ms instead of ~96 (docs/benchmarks.md). Used where the
model computes in bfloat16 on a CPU whose oneDNN has bfloat16 kernels; after quantisation, so that only
layers left in bfloat16 are packed.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util

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


def can_pack(device: torch.device) -> bool:
    """Whether bfloat16 Linear layers on `device` can be packed: a CPU whose oneDNN has bfloat16 kernels."""
    return device.type == "cpu" and torch.backends.mkldnn.is_available() and _mkldnn_bf16()


def pack_linears(model: torch.nn.Module) -> int:
    """Replace every bfloat16 CPU `nn.Linear` in `model` with a PackedLinear; returns how many. A layer whose
    weight an embedding shares (a head tied to the input embeddings) is left as it is: packed, the weight
    would be held twice."""
    if not can_pack(torch.device("cpu")):
        return 0
    shared = {m.weight.data_ptr() for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    packed = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if (
                type(child) is torch.nn.Linear
                and _packable(child.weight)
                and child.weight.data_ptr() not in shared
            ):
                setattr(module, name, PackedLinear(child))
                packed += 1
    if packed:
        _return_freed_memory()
    return packed


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


def _mkldnn_bf16() -> bool:
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
