"""Facts about the two published H2OVL-Mississippi checkpoints, in their own config.json layout.

Numbers come from the published model cards and configs: the vision tower is InternViT-300M-448px for
both; the 0.8B's language model is H2O-Danube3-500M (Llama architecture), the 2B's is H2O-Danube2-1.8B
(Mistral architecture). Only the 2B uses multi-scale adaptive cropping (MSAC). They let the benchmarks
build full-size models with random weights, since no machine here can download the real ones.
"""

from __future__ import annotations

import copy
from typing import Any

from extractor.registry import MODELS

# The tokenizer side of the published repos: the Danube models' 32,000-piece Mistral sentencepiece model
# (tokenizer.model, no tokenizer.json) plus ten added tokens with ids 32000-32009, in this order — InternVL's
# nine, then the template separator. Their added_tokens.json is these ten, serialised (199 bytes).
BASE_VOCAB_SIZE = 32000
ADDED_TOKENS = (
    "<img>",
    "</img>",
    "<IMG_CONTEXT>",
    "<quad>",
    "</quad>",
    "<ref>",
    "</ref>",
    "<box>",
    "</box>",
    "<|end|>",
)
# what the model cannot work without; `<|prompt|>` and `<|answer|>` are plain text in the h2ogpt2 template
REQUIRED_TOKENS = ("<img>", "</img>", "<IMG_CONTEXT>", "<|end|>")
# tokenizer_config.json as transformers' slow LlamaTokenizer reads it; `legacy` is left unset, and unset
# means legacy in the slow tokenizer the published usage loads (use_fast=False)
TOKENIZER_CONFIG = {
    "tokenizer_class": "LlamaTokenizer",
    "add_bos_token": True,
    "add_eos_token": False,
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "pad_token": "<unk>",
    "model_max_length": 8192,
    "padding_side": "left",
    "clean_up_tokenization_spaces": False,
    "sp_model_kwargs": {},
}

_INTERN_VIT_300M: dict[str, Any] = {
    "architectures": ["InternVisionModel"],
    "model_type": "intern_vit_6b",
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_attention_heads": 16,
    "num_hidden_layers": 24,
    "image_size": 448,
    "patch_size": 14,
    "num_channels": 3,
    "hidden_act": "gelu",
    "norm_type": "layer_norm",
    "layer_norm_eps": 1e-6,
    "qkv_bias": True,
    "qk_normalization": False,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "dropout": 0.0,
    "attention_dropout": 0.0,
    "drop_path_rate": 0.0,
    "use_flash_attn": False,
}

_DANUBE3_500M: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 1536,
    "intermediate_size": 4096,
    "num_hidden_layers": 16,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-5,
    "rope_theta": 100000.0,
    "hidden_act": "silu",
    "attention_bias": False,
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 0,
    "vocab_size": BASE_VOCAB_SIZE + len(ADDED_TOKENS),
}

_DANUBE2_1_8B: dict[str, Any] = {
    "architectures": ["MistralForCausalLM"],
    "model_type": "mistral",
    "hidden_size": 2560,
    "intermediate_size": 6912,
    "num_hidden_layers": 24,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "sliding_window": None,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 0,
    "vocab_size": BASE_VOCAB_SIZE + len(ADDED_TOKENS),
}


def _chat_config(llm: dict[str, Any], *, use_msac: bool) -> dict[str, Any]:
    return {
        "architectures": ["H2OVLChatModel"],
        "model_type": "h2ovl_chat",
        "template": "h2ogpt2",
        "select_layer": -1,
        "downsample_ratio": 0.5,
        "ps_version": "v2",
        "force_image_size": 448,
        "dynamic_image_size": True,
        "min_dynamic_patch": 1,
        "max_dynamic_patch": 6,
        "use_thumbnail": True,
        "use_msac": use_msac,
        "pad2square": False,
        "torch_dtype": "bfloat16",
        "vision_config": copy.deepcopy(_INTERN_VIT_300M),
        "llm_config": copy.deepcopy(llm),
    }


def published_config(name: str) -> dict[str, Any]:
    """The config.json of `h2ovl-800m` or `h2ovl-2b` (a fresh copy)."""
    if name == "h2ovl-800m":
        return _chat_config(_DANUBE3_500M, use_msac=False)
    if name == "h2ovl-2b":
        return _chat_config(_DANUBE2_1_8B, use_msac=True)
    raise KeyError(f"unknown published model {name!r}; known: {sorted(MODELS)}")
