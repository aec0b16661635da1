"""H2OVL's published config.json → transformers' InternVLConfig, plus the preprocessing settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from transformers import InternVLConfig, InternVLVisionConfig, LlamaConfig, MistralConfig

from extractor.errors import CheckpointError

# the language models H2OVL ships with; both are stock transformers architectures
_TEXT_CONFIGS = {"llama": LlamaConfig, "mistral": MistralConfig}
_REQUIRED = ("vision_config", "llm_config", "downsample_ratio", "template")


@dataclass(frozen=True)
class ModelSettings:
    """What the preprocessing and the prompt need to know about a checkpoint."""

    image_size: int
    min_dynamic_patch: int
    max_dynamic_patch: int
    use_thumbnail: bool
    use_msac: bool
    template: str
    num_image_token: int  # language-model tokens per 448×448 tile
    context_length: int = 8192  # the language model's trained context: prompt + answer must fit


def _vision_config(raw: dict[str, Any]) -> InternVLVisionConfig:
    return InternVLVisionConfig(
        hidden_size=raw["hidden_size"],
        intermediate_size=raw["intermediate_size"],
        num_attention_heads=raw["num_attention_heads"],
        num_hidden_layers=raw["num_hidden_layers"],
        image_size=raw["image_size"],
        patch_size=raw["patch_size"],
        num_channels=raw.get("num_channels", 3),
        hidden_act=raw.get("hidden_act", "gelu"),
        norm_type=raw.get("norm_type", "layer_norm"),
        layer_norm_eps=raw.get("layer_norm_eps", 1e-6),
        attention_bias=raw.get("qkv_bias", True),
        use_qk_norm=raw.get("qk_normalization", False),
        # InternViT has no final norm before the projector: transformers spells that use_mean_pooling=True
        use_mean_pooling=True,
        initializer_range=raw.get("initializer_range", 0.02),
    )


def _text_config(raw: dict[str, Any]):
    model_type = raw.get("model_type")
    if model_type not in _TEXT_CONFIGS:
        raise CheckpointError(f"llm_config.model_type {model_type!r} is not one H2OVL uses (llama, mistral)")
    fields = {k: v for k, v in raw.items() if k not in ("architectures", "model_type", "_name_or_path")}
    return _TEXT_CONFIGS[model_type](**fields)


_INT, _NUMBER, _BOOL, _STR = (int,), (int, float), (bool,), (str,)
# the fields bayou reads, with the JSON types they must have: a wrong one is named here, not deep in transformers
_FIELD_TYPES: dict[str, dict[str, tuple[type, ...]]] = {
    "": {
        "template": _STR,
        "downsample_ratio": _NUMBER,
        "force_image_size": _INT,
        "min_dynamic_patch": _INT,
        "max_dynamic_patch": _INT,
        "use_thumbnail": _BOOL,
        "use_msac": _BOOL,
        "select_layer": _INT,
        "ps_version": _STR,
    },
    "vision_config": {
        **dict.fromkeys(
            ("hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers"), _INT
        ),
        **dict.fromkeys(("image_size", "patch_size", "num_channels"), _INT),
        "layer_norm_eps": _NUMBER,
        "qkv_bias": _BOOL,
        "qk_normalization": _BOOL,
    },
    "llm_config": {
        "model_type": _STR,
        **dict.fromkeys(
            ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"), _INT
        ),
        **dict.fromkeys(("num_key_value_heads", "vocab_size", "max_position_embeddings"), _INT),
        "rms_norm_eps": _NUMBER,
        "rope_theta": _NUMBER,
        "tie_word_embeddings": _BOOL,
    },
}
_REQUIRED_NESTED = {
    "vision_config": (
        "hidden_size",
        "intermediate_size",
        "num_attention_heads",
        "num_hidden_layers",
        "image_size",
        "patch_size",
    ),
    "llm_config": ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size"),
}


def _check_field_types(raw: dict[str, Any]) -> None:
    for section, fields in _FIELD_TYPES.items():
        node = raw if not section else raw.get(section)
        if not isinstance(node, dict):
            raise CheckpointError(f"config.json: {section} must be an object, not {type(node).__name__}")
        for name in _REQUIRED_NESTED.get(section, ()):
            if name not in node:
                raise CheckpointError(f"config.json lacks {section}.{name}")
        for name, types in fields.items():
            value = node.get(name)
            # bool is an int in Python, and JSON true is no layer count
            wrong = value is not None and (
                not isinstance(value, types) or (isinstance(value, bool) and bool not in types)
            )
            if wrong:
                where = f"{section}.{name}" if section else name
                wanted = " or ".join(sorted({_JSON_NAMES[t] for t in types}))
                raise CheckpointError(
                    f"config.json: {where} must be {wanted}, not {type(value).__name__} {value!r}"
                )


_JSON_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def check_h2ovl_config(raw: dict[str, Any]) -> None:
    if raw.get("model_type") != "h2ovl_chat":
        raise CheckpointError(f"config.json model_type is {raw.get('model_type')!r}, expected 'h2ovl_chat'")
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise CheckpointError(f"config.json lacks {', '.join(missing)}")
    _check_field_types(raw)
    if raw.get("select_layer", -1) != -1:
        raise CheckpointError("only select_layer -1 is supported (the published models use it)")
    if raw.get("ps_version", "v2") != "v2":
        raise CheckpointError("only ps_version v2 pixel shuffle is supported (the published models use it)")


def to_internvl_config(raw: dict[str, Any], *, image_token_id: int) -> InternVLConfig:
    check_h2ovl_config(raw)
    vision = _vision_config(raw["vision_config"])
    text = _text_config(raw["llm_config"])
    tokens_per_tile = num_image_token(raw)
    return InternVLConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=image_token_id,
        image_seq_length=tokens_per_tile,
        downsample_ratio=raw["downsample_ratio"],
        projector_hidden_act="gelu",
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        tie_word_embeddings=bool(raw["llm_config"].get("tie_word_embeddings", False)),
    )


def num_image_token(raw: dict[str, Any]) -> int:
    vision = raw["vision_config"]
    size = raw.get("force_image_size") or vision["image_size"]
    patches = size // vision["patch_size"]
    return int(patches * patches * raw["downsample_ratio"] ** 2)


def model_settings(raw: dict[str, Any]) -> ModelSettings:
    return ModelSettings(
        image_size=raw.get("force_image_size") or raw["vision_config"]["image_size"],
        min_dynamic_patch=raw.get("min_dynamic_patch", 1),
        max_dynamic_patch=raw.get("max_dynamic_patch", 6),
        use_thumbnail=bool(raw.get("use_thumbnail", True)),
        use_msac=bool(raw.get("use_msac", False)),
        template=raw["template"],
        num_image_token=num_image_token(raw),
        context_length=int(raw["llm_config"].get("max_position_embeddings", 8192)),
    )
