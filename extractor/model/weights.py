"""Parameter names: H2OVL's published checkpoint ↔ transformers' InternVLForConditionalGeneration.

The published checkpoint keeps InternVL's original names (`vision_model.*`, `mlp1.*`, `language_model.*`).
transformers names the same tensors differently and stores InternViT's fused qkv projection as three
separate q/k/v projections. These tables are the whole adaptation; both directions are total, so a round
trip reproduces every tensor exactly.
"""

from __future__ import annotations

import re

import torch

from extractor.errors import CheckpointError

_VIT_LAYER = r"vision_model\.encoder\.layers\.(\d+)\."
_HF_VIT_LAYER = r"model\.vision_tower\.encoder\.layer\.(\d+)\."

# (original pattern, transformers replacement); order does not matter, patterns are anchored
_ORIGINAL_TO_HF: list[tuple[str, str]] = [
    (r"vision_model\.embeddings\.class_embedding", "model.vision_tower.embeddings.cls_token"),
    (r"vision_model\.embeddings\.position_embedding", "model.vision_tower.embeddings.position_embeddings"),
    (
        r"vision_model\.embeddings\.patch_embedding\.(weight|bias)",
        r"model.vision_tower.embeddings.patch_embeddings.projection.\1",
    ),
    (
        _VIT_LAYER + r"attn\.proj\.(weight|bias)",
        r"model.vision_tower.encoder.layer.\1.attention.projection_layer.\2",
    ),
    (
        _VIT_LAYER + r"attn\.(q_norm|k_norm)\.weight",
        r"model.vision_tower.encoder.layer.\1.attention.\2.weight",
    ),
    (_VIT_LAYER + r"ls1", r"model.vision_tower.encoder.layer.\1.lambda_1"),
    (_VIT_LAYER + r"ls2", r"model.vision_tower.encoder.layer.\1.lambda_2"),
    (_VIT_LAYER + r"norm1\.(weight|bias)", r"model.vision_tower.encoder.layer.\1.layernorm_before.\2"),
    (_VIT_LAYER + r"norm2\.(weight|bias)", r"model.vision_tower.encoder.layer.\1.layernorm_after.\2"),
    (_VIT_LAYER + r"mlp\.(fc1|fc2)\.(weight|bias)", r"model.vision_tower.encoder.layer.\1.mlp.\2.\3"),
    (r"mlp1\.0\.(weight|bias)", r"model.multi_modal_projector.layer_norm.\1"),
    (r"mlp1\.1\.(weight|bias)", r"model.multi_modal_projector.linear_1.\1"),
    (r"mlp1\.3\.(weight|bias)", r"model.multi_modal_projector.linear_2.\1"),
    (r"language_model\.model\.(.+)", r"model.language_model.\1"),
    (r"language_model\.lm_head\.weight", "lm_head.weight"),
]

_HF_TO_ORIGINAL: list[tuple[str, str]] = [
    (r"model\.vision_tower\.embeddings\.cls_token", "vision_model.embeddings.class_embedding"),
    (r"model\.vision_tower\.embeddings\.position_embeddings", "vision_model.embeddings.position_embedding"),
    (
        r"model\.vision_tower\.embeddings\.patch_embeddings\.projection\.(weight|bias)",
        r"vision_model.embeddings.patch_embedding.\1",
    ),
    (
        _HF_VIT_LAYER + r"attention\.projection_layer\.(weight|bias)",
        r"vision_model.encoder.layers.\1.attn.proj.\2",
    ),
    (_HF_VIT_LAYER + r"attention\.(q_norm|k_norm)\.weight", r"vision_model.encoder.layers.\1.attn.\2.weight"),
    (_HF_VIT_LAYER + r"lambda_1", r"vision_model.encoder.layers.\1.ls1"),
    (_HF_VIT_LAYER + r"lambda_2", r"vision_model.encoder.layers.\1.ls2"),
    (_HF_VIT_LAYER + r"layernorm_before\.(weight|bias)", r"vision_model.encoder.layers.\1.norm1.\2"),
    (_HF_VIT_LAYER + r"layernorm_after\.(weight|bias)", r"vision_model.encoder.layers.\1.norm2.\2"),
    (_HF_VIT_LAYER + r"mlp\.(fc1|fc2)\.(weight|bias)", r"vision_model.encoder.layers.\1.mlp.\2.\3"),
    (r"model\.multi_modal_projector\.layer_norm\.(weight|bias)", r"mlp1.0.\1"),
    (r"model\.multi_modal_projector\.linear_1\.(weight|bias)", r"mlp1.1.\1"),
    (r"model\.multi_modal_projector\.linear_2\.(weight|bias)", r"mlp1.3.\1"),
    (r"model\.language_model\.(.+)", r"language_model.model.\1"),
    (r"lm_head\.weight", "language_model.lm_head.weight"),
]

_QKV = re.compile(_VIT_LAYER + r"attn\.qkv\.(weight|bias)")
_HF_QKV = re.compile(_HF_VIT_LAYER + r"attention\.(q_proj|k_proj|v_proj)\.(weight|bias)")
_COMPILED = [(re.compile(p), r) for p, r in _ORIGINAL_TO_HF]
_COMPILED_BACK = [(re.compile(p), r) for p, r in _HF_TO_ORIGINAL]


def _rename(name: str, rules: list[tuple[re.Pattern[str], str]]) -> str | None:
    for pattern, replacement in rules:
        if pattern.fullmatch(name):
            return pattern.sub(replacement, name)
    return None


def to_hf_state_dict(original: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original H2OVL names → transformers names; an unknown name is an error naming it."""
    converted: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for name, tensor in original.items():
        qkv = _QKV.fullmatch(name)
        if qkv:
            layer, kind = qkv.groups()
            # InternViT fuses q, k and v along the output dimension, in that order
            for part, chunk in zip(("q_proj", "k_proj", "v_proj"), tensor.chunk(3, dim=0), strict=True):
                converted[f"model.vision_tower.encoder.layer.{layer}.attention.{part}.{kind}"] = chunk
            continue
        new = _rename(name, _COMPILED)
        if new is None:
            unknown.append(name)
        else:
            converted[new] = tensor
    if unknown:
        raise CheckpointError(f"unexpected tensor(s) in checkpoint: {', '.join(sorted(unknown)[:10])}")
    return converted


def to_original_state_dict(hf: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers names → original H2OVL names (q/k/v fused back into qkv)."""
    converted: dict[str, torch.Tensor] = {}
    qkv_parts: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for name, tensor in hf.items():
        split = _HF_QKV.fullmatch(name)
        if split:
            layer, part, kind = split.groups()
            qkv_parts.setdefault((layer, kind), {})[part] = tensor
            continue
        new = _rename(name, _COMPILED_BACK)
        if new is None:
            raise CheckpointError(f"no original name for tensor {name}")
        converted[new] = tensor
    for (layer, kind), parts in qkv_parts.items():
        if set(parts) != {"q_proj", "k_proj", "v_proj"}:
            raise CheckpointError(f"vision layer {layer} lacks one of q/k/v {kind}")
        fused = torch.cat([parts["q_proj"], parts["k_proj"], parts["v_proj"]], dim=0)
        converted[f"vision_model.encoder.layers.{layer}.attn.qkv.{kind}"] = fused
    return converted
