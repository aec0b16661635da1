"""`bayou models tiny`: a few-MB randomly initialised checkpoint in the published H2OVL layout.

Same config.json fields and structure as the published models with small sizes, original parameter
names in safetensors, the published tokenizer files around a small sentencepiece model (the ten added
tokens after its base vocabulary, `<|end|>` last; `<|prompt|>`/`<|answer|>` are text). Its output is noise;
the README it writes says so. The loader cannot tell it from a real checkpoint except by size.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import InternVLForConditionalGeneration

from extractor.model.config import to_internvl_config
from extractor.model.published import ADDED_TOKENS, published_config
from extractor.model.tiny_tokenizer import train_small_model, write_published_tokenizer
from extractor.model.weights import to_original_state_dict

TINY_VISION = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "num_hidden_layers": 2}
TINY_TEXT = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    # heads of 32: vLLM's CPU attention has no kernel for smaller ones, and the tiny checkpoint is also what
    # tries the vLLM engine without the real weights
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "max_position_embeddings": 8192,  # the Danube models' trained context
}

EMBEDDING_ROW_MULTIPLE = 64

_README = """# Tiny random H2OVL-Mississippi checkpoint ({flavour})

Written by `bayou models tiny` (seed {seed}). Randomly initialised: **its output is noise**. It has the
published checkpoint's layout (config.json fields, original parameter names, sentencepiece tokenizer with
the published added tokens) at
a tiny size, for tests and offline trials of the pipeline. Do not use it to judge extraction quality.
"""


def tiny_config(*, msac: bool, vocab_size: int) -> dict:
    """The published config of the 2B (MSAC, Mistral) or 0.8B (Llama), shrunk."""
    raw = published_config("h2ovl-2b" if msac else "h2ovl-800m")
    raw["vision_config"].update(TINY_VISION)
    raw["llm_config"].update(TINY_TEXT, vocab_size=vocab_size)
    raw["torch_dtype"] = "float32"
    raw["bayou_tiny_random"] = True  # a marker for humans; the loader ignores it
    return raw


def write_tiny_checkpoint(
    directory: str | Path,
    *,
    seed: int = 0,
    msac: bool = False,
    shards: int = 1,
    sentencepiece_model: bytes | None = None,
) -> Path:
    """Tiny random weights in the published layout; the tokenizer is `sentencepiece_model` if given (the
    real Mistral model, say), else a small one trained here."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ids_in_use = write_published_tokenizer(directory, sentencepiece_model or train_small_model())
    # embedding rows padded above the vocabulary, as checkpoints often are: the loader must accept them
    raw = tiny_config(msac=msac, vocab_size=-(-ids_in_use // EMBEDDING_ROW_MULTIPLE) * EMBEDDING_ROW_MULTIPLE)
    image_token_id = ids_in_use - len(ADDED_TOKENS) + ADDED_TOKENS.index("<IMG_CONTEXT>")

    torch.manual_seed(seed)
    model = InternVLForConditionalGeneration(to_internvl_config(raw, image_token_id=image_token_id))
    original = {k: v.contiguous() for k, v in to_original_state_dict(model.state_dict()).items()}

    (directory / "config.json").write_text(json.dumps(raw, indent=2) + "\n")
    (directory / "generation_config.json").write_text(
        json.dumps({"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}, indent=2) + "\n"
    )
    _save_weights(directory, original, shards)
    flavour = "2B layout, MSAC" if msac else "0.8B layout"
    (directory / "README.md").write_text(_README.format(flavour=flavour, seed=seed))
    return directory


def _save_weights(directory: Path, tensors: dict[str, torch.Tensor], shards: int) -> None:
    if shards <= 1:
        save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
        return
    names = sorted(tensors)
    weight_map: dict[str, str] = {}
    for index in range(shards):
        part = names[index::shards]
        filename = f"model-{index + 1:05d}-of-{shards:05d}.safetensors"
        save_file({n: tensors[n] for n in part}, str(directory / filename), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, filename))
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index_doc = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index_doc, indent=2) + "\n")
