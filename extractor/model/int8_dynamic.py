"""int8 Linear layers for BAYOU_QUANTIZE=int8-dynamic: int8 weights with one scale per output channel, and
each input row (a token) quantised to int8 on its own scale at run time; float32 in and out, through torch's
own x86 int8 kernel (fbgemm's).

Why not torch's `quantize_dynamic`, which drives the same kernel: its default quantises each weight with
one scale for the whole matrix, and its kernel (`quantized::linear_dynamic`) quantises its whole input with
one scale too. One input is every token of a prompt, every tile of a batch's pages, every document of a
batch. One large token (language models carry a few tokens whose activations are tens to thousands of times
the rest's) then coarsens every other token's steps, and a document's answer depends on which documents
shared its batch: through a 1,536 × 4,096 layer, one token 30× the others moved the other tokens' outputs
by ~1.0–1.5 on a scale of ~3 with one scale for all, by ~0.05 with a scale per token (docs/benchmarks.md,
session 14).

So each row is first scaled by the reciprocal of its largest magnitude (every row then lies in [-1, 1]),
quantised by the kernel with fixed parameters for [-1, 1], and the kernel's output rows are multiplied back
by their scales. A row's result is then a function of that row alone, bit for bit, whether it comes alone
(one document's decoding step) or with others (a batch's step, a prompt, a page's tiles). Leaving a lone row
to the kernel's own dynamic quantisation (its range is the row's) was 0.02–0.07 ms a layer faster, but a
document decoded alone then read differently from the same document in a batch. Rows go through in blocks of
`BLOCK_ROWS`.
"""

from __future__ import annotations

import warnings

import torch

from extractor.model.cpu_linear import replace_linears

# rows per kernel call: bounds a call's temporaries (its scaled inputs and products, 16 MB at 4,096 wide)
# when a batch's pages bring tens of thousands of rows; fewer calls read each weight fewer times (blocks of
# 256 read a vision layer's weights twelve times for a 3-tile page, and took ~10% longer on an EPYC)
BLOCK_ROWS = 1024
# the smallest row scale: a row of zeros is scaled by its reciprocal (and stays zeros), never by 1/0
_TINY = torch.finfo(torch.float32).tiny
# every scaled row lies in [-1, 1]: the kernel quantises it with these fixed parameters, onto 0..128. Seven
# bits: torch's x86 int8 kernel multiplies unsigned 8-bit inputs by the int8 weights (-127..127) in pairs
# into 16-bit sums, and 2 × 128 × 127 is the most that cannot saturate them on CPUs without VNNI
_INPUT_SCALE = 2 / 127
_INPUT_ZERO_POINT = 64
# fbgemm's product of float32 inputs quantised with given parameters, int8 weights, float32 out
_PRODUCT = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32


class Int8DynamicLinear(torch.nn.Module):
    """A Linear layer with int8 weights (a scale per output channel, packed for the kernel) and per-row
    dynamic int8 inputs; float32 in and out, CPU only."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach().float()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        scales = (weight.abs().amax(dim=1) / 127).clamp_min(_TINY)
        zero_points = torch.zeros(self.out_features, dtype=torch.long)
        with warnings.catch_warnings():  # torch announces its quantized tensors' move to torchao
            warnings.simplefilter("ignore")
            qweight = torch.quantize_per_channel(weight, scales.double(), zero_points, 0, torch.qint8)
        # packed without the bias: the rows' products are scaled back before it is added
        self._packed = torch.ops.quantized.linear_prepack(qweight, None)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float())

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        flat = inputs.reshape(-1, self.in_features).float()
        if flat.shape[0] <= BLOCK_ROWS:  # a decoding step, a short prompt: the kernel's output is the layer's
            output = self._rows(flat)
        else:
            output = torch.empty(flat.shape[0], self.out_features)
            for start in range(0, flat.shape[0], BLOCK_ROWS):
                self._rows(flat[start : start + BLOCK_ROWS], output[start : start + BLOCK_ROWS])
        return output.view(*inputs.shape[:-1], self.out_features)

    def _rows(self, rows: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """This layer of `rows`, each quantised on its own scale, into `out` or the kernel's own output: the
        same arithmetic for every number of rows, so a row's result is the same bit for bit however many
        rows it comes with."""
        scale = _largest_magnitudes(rows)
        # times the reciprocal: a third less time than dividing, and as exact a function of the row alone
        product = _PRODUCT(rows * scale.reciprocal(), _INPUT_SCALE, _INPUT_ZERO_POINT, self._packed)
        output = product.mul_(scale) if out is None else torch.mul(product, scale, out=out)
        if self.bias is not None:
            output.add_(self.bias)
        return output

    def weight_bytes(self) -> int:
        """The int8 weight and its per-channel scales (held packed, outside the state dict)."""
        return self.in_features * self.out_features + self.out_features * 8

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            "int8 weights per channel, int8 inputs per row"
        )


def _largest_magnitudes(rows: torch.Tensor) -> torch.Tensor:
    """Each row's largest magnitude, (rows, 1), at least _TINY. From its largest and smallest values: torch's
    amax and amin are vectorised, `vector_norm(ord=inf)` and `aminmax` took 8–10× as long (1,401 × 1,536)."""
    largest = rows.amax(dim=1, keepdim=True)
    return torch.maximum(largest, rows.amin(dim=1, keepdim=True).neg_(), out=largest).clamp_min_(_TINY)


def int8_dynamic(module: torch.nn.Module) -> torch.nn.Module:
    """`module` with its Linear layers (or itself, a Linear) made Int8DynamicLinear, in place: each layer's
    float32 weight is let go as soon as its int8 one is packed (a copy of the 2B's towers: ~8 GB more)."""
    if type(module) is torch.nn.Linear:
        return Int8DynamicLinear(module)
    replace_linears(module, Int8DynamicLinear)
    return module
