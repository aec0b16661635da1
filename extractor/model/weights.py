"""Parameter names: H2OVL's published checkpoint ↔ transformers' InternVLForConditionalGeneration.

The published checkpoint keeps InternVL's original names (`vision_model.*`, `mlp1.*`, `language_model.*`).
transformers names the same tensors differently and stores InternViT's fused qkv projection as three
separate q/k/v projections. One table of name templates serves both directions, so a round trip
reproduces every tensor exactly.
"""

from __future__ import annotations

import re

import torch

from extractor.errors import CheckpointError

_VIT = "vision_model.encoder.layers.{n}."
_HF_VIT = "model.vision_tower.encoder.layer.{n}."

# (original, transformers) name templates; {n} a layer number, {p} weight|bias, {rest} any suffix
_NAME_PAIRS: list[tuple[str, str]] = [
    ("vision_model.embeddings.class_embedding", "model.vision_tower.embeddings.cls_token"),
    ("vision_model.embeddings.position_embedding", "model.vision_tower.embeddings.position_embeddings"),
    (
        "vision_model.embeddings.patch_embedding.{p}",
        "model.vision_tower.embeddings.patch_embeddings.projection.{p}",
    ),
    (_VIT + "attn.proj.{p}", _HF_VIT + "attention.projection_layer.{p}"),
    (_VIT + "attn.{qk}.weight", _HF_VIT + "attention.{qk}.weight"),
    (_VIT + "ls1", _HF_VIT + "lambda_1"),
    (_VIT + "ls2", _HF_VIT + "lambda_2"),
    (_VIT + "norm1.{p}", _HF_VIT + "layernorm_before.{p}"),
    (_VIT + "norm2.{p}", _HF_VIT + "layernorm_after.{p}"),
    (_VIT + "mlp.{fc}.{p}", _HF_VIT + "mlp.{fc}.{p}"),
    ("mlp1.0.{p}", "model.multi_modal_projector.layer_norm.{p}"),
    ("mlp1.1.{p}", "model.multi_modal_projector.linear_1.{p}"),
    ("mlp1.3.{p}", "model.multi_modal_projector.linear_2.{p}"),
    ("language_model.model.{rest}", "model.language_model.{rest}"),
    ("language_model.lm_head.weight", "lm_head.weight"),
]
_FIELDS = {"n": r"\d+", "p": "weight|bias", "qk": "q_norm|k_norm", "fc": "fc1|fc2", "rest": ".+"}


def _pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", template)
    # even parts are literal text, odd parts field names
    regex = "".join(
        re.escape(part) if i % 2 == 0 else f"(?P<{part}>{_FIELDS[part]})" for i, part in enumerate(parts)
    )
    return re.compile(regex)


_FORWARD = [(_pattern(original), hf) for original, hf in _NAME_PAIRS]
_BACKWARD = [(_pattern(hf), original) for original, hf in _NAME_PAIRS]
_QKV = _pattern(_VIT + "attn.qkv.{p}")
_HF_QKV = re.compile(
    r"model\.vision_tower\.encoder\.layer\.(\d+)\.attention\.(q_proj|k_proj|v_proj)\.(weight|bias)"
)


def _rename(name: str, rules: list[tuple[re.Pattern[str], str]]) -> str | None:
    for pattern, template in rules:
        match = pattern.fullmatch(name)
        if match:
            return template.format(**match.groupdict())
    return None


def to_hf_state_dict(original: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original H2OVL names → transformers names; an unknown name is an error naming it."""
    converted: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for name, tensor in original.items():
        qkv = _QKV.fullmatch(name)
        if qkv:
            layer, kind = qkv["n"], qkv["p"]
            # InternViT fuses q, k and v along the output dimension, in that order
            for part, chunk in zip(("q_proj", "k_proj", "v_proj"), tensor.chunk(3, dim=0), strict=True):
                converted[f"model.vision_tower.encoder.layer.{layer}.attention.{part}.{kind}"] = chunk
            continue
        new = _rename(name, _FORWARD)
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
        new = _rename(name, _BACKWARD)
        if new is None:
            raise CheckpointError(f"no original name for tensor {name}")
        converted[new] = tensor
    for (layer, kind), parts in qkv_parts.items():
        if set(parts) != {"q_proj", "k_proj", "v_proj"}:
            raise CheckpointError(f"vision layer {layer} lacks one of q/k/v {kind}")
        fused = torch.cat([parts["q_proj"], parts["k_proj"], parts["v_proj"]], dim=0)
        converted[f"vision_model.encoder.layers.{layer}.attn.qkv.{kind}"] = fused
    return converted
