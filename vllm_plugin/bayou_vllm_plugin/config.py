"""H2OVL-Mississippi's config.json as transformers config objects, with the field names vLLM reads.

The published config has a `vision_config` (InternViT: `qkv_bias`, `qk_normalization`, `norm_type`, ...)
and an `llm_config` (a stock Llama or Mistral config). vLLM's InternVL family reads the language model's
config as `text_config`, so both names point at the same object. Defaults are the 0.8B's published values;
every field the published configs carry is read from config.json.
"""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig
from transformers.models.auto import CONFIG_MAPPING


class InternVisionConfig(PretrainedConfig):
    model_type = "intern_vit_6b"  # what the published vision_config names itself

    def __init__(
        self,
        hidden_size: int = 1024,
        intermediate_size: int = 4096,
        num_attention_heads: int = 16,
        num_hidden_layers: int = 24,
        image_size: int = 448,
        patch_size: int = 14,
        num_channels: int = 3,
        hidden_act: str = "gelu",
        norm_type: str = "layer_norm",
        layer_norm_eps: float = 1e-6,
        qkv_bias: bool = True,
        qk_normalization: bool = False,
        initializer_factor: float = 1.0,
        initializer_range: float = 0.02,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        drop_path_rate: float = 0.0,
        use_flash_attn: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_attention_heads = num_attention_heads
        self.num_hidden_layers = num_hidden_layers
        self.image_size = image_size
        self.patch_size = patch_size
        self.num_channels = num_channels
        self.hidden_act = hidden_act
        self.norm_type = norm_type
        self.layer_norm_eps = layer_norm_eps
        self.qkv_bias = qkv_bias
        self.qk_normalization = qk_normalization
        self.initializer_factor = initializer_factor
        self.initializer_range = initializer_range
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.drop_path_rate = drop_path_rate
        self.use_flash_attn = use_flash_attn


def _text_config(raw: dict[str, Any] | PretrainedConfig | None) -> PretrainedConfig:
    if isinstance(raw, PretrainedConfig):
        return raw
    fields = dict(raw or {})
    model_type = fields.pop("model_type", "llama")
    if model_type not in ("llama", "mistral"):  # the language models H2OVL ships with
        raise ValueError(f"llm_config.model_type {model_type!r} is not one H2OVL uses (llama, mistral)")
    return CONFIG_MAPPING[model_type](**fields)


class H2OVLChatConfig(PretrainedConfig):
    model_type = "h2ovl_chat"

    def __init__(
        self,
        vision_config: dict[str, Any] | PretrainedConfig | None = None,
        llm_config: dict[str, Any] | PretrainedConfig | None = None,
        template: str = "h2ogpt2",
        select_layer: int = -1,
        downsample_ratio: float = 0.5,
        ps_version: str = "v2",
        force_image_size: int | None = 448,
        dynamic_image_size: bool = True,
        min_dynamic_patch: int = 1,
        max_dynamic_patch: int = 6,
        use_thumbnail: bool = True,
        use_msac: bool = False,
        pad2square: bool = False,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("text_config", None)  # a saved copy of llm_config: llm_config is the source of truth
        super().__init__(**kwargs)
        if isinstance(vision_config, PretrainedConfig):
            self.vision_config = vision_config
        else:
            self.vision_config = InternVisionConfig(**(vision_config or {}))
        self.llm_config = _text_config(llm_config)
        self.text_config = self.llm_config  # the name vLLM's InternVL models read
        self.template = template
        self.select_layer = select_layer
        self.downsample_ratio = downsample_ratio
        self.ps_version = ps_version
        self.force_image_size = force_image_size
        self.dynamic_image_size = dynamic_image_size
        self.min_dynamic_patch = min_dynamic_patch
        self.max_dynamic_patch = max_dynamic_patch
        self.use_thumbnail = use_thumbnail
        self.use_msac = use_msac
        self.pad2square = pad2square
        self.tie_word_embeddings = bool(getattr(self.llm_config, "tie_word_embeddings", False))
