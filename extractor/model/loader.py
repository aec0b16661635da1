"""Load a published (or tiny) H2OVL-Mississippi checkpoint into transformers' InternVL model.

No `trust_remote_code`: the code that ships beside the published weights never runs. We read the config
and the safetensors ourselves, rename the tensors (weights.py) and build transformers' own classes.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from transformers import (
    AutoTokenizer,
    InternVLConfig,
    InternVLForConditionalGeneration,
    PreTrainedTokenizerBase,
)

from extractor.errors import CheckpointError
from extractor.model import attention
from extractor.model.config import ModelSettings, check_h2ovl_config, model_settings, to_internvl_config
from extractor.model.device import resolve_device, resolve_dtype
from extractor.model.in_place import activations_in_place
from extractor.model.published import REQUIRED_TOKENS
from extractor.model.tokenizer import (
    FastPathTokenizer,
    PromptTokenizer,
    load_prompt_tokenizer,
    read_json,
    tokenizer_config,
)
from extractor.model.weights import to_hf_state_dict

log = logging.getLogger(__name__)

_HUB_PATTERNS = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt"]


@dataclass
class LoadedModel:
    model: InternVLForConditionalGeneration
    tokenizer: PreTrainedTokenizerBase  # the vocabulary (for the grammar engine)
    prompt_tokenizer: PromptTokenizer | FastPathTokenizer  # ids in, text out, as the published usage
    image_token_id: int
    settings: ModelSettings
    source: str
    revision: str
    device: torch.device
    dtype: torch.dtype

    @property
    def stop_token_ids(self) -> list[int]:
        """`<|end|>`, the template's separator, which the published usage passes as eos_token_id; and `</s>`.

        The h2ogpt2 template lists both as its stop ids ([2, 32009]). `</s>` stops too because the published
        usage's answer is the decoded text up to `<|end|>` with special tokens skipped: text a model writes
        after `</s>` is past the end of anything it was trained to write, never part of a trained answer.
        """
        end = self.prompt_tokenizer.token_id("<|end|>")
        assert end is not None  # the loader refuses a tokenizer without it
        eos = self.prompt_tokenizer.eos_id
        return sorted({end, eos} if eos >= 0 else {end})


def local_checkpoint(source: str | Path) -> Path | None:
    """`source` as a local checkpoint directory; None for a hub id (org/name); CheckpointError for neither."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.exists() or str(source).startswith((".", "/", "~")) or str(source).count("/") != 1:
        raise CheckpointError(f"{source}: no such checkpoint directory (and not a hub id like org/name)")
    return None


def resolve_source(source: str | Path) -> Path:
    """A local checkpoint directory, or a hub id looked up in (then fetched into) huggingface_hub's cache."""
    path = local_checkpoint(source)
    if path is not None:
        return path
    from huggingface_hub import snapshot_download

    try:  # the cache first: a downloaded model works offline
        return Path(snapshot_download(str(source), allow_patterns=_HUB_PATTERNS, local_files_only=True))
    except Exception:  # noqa: BLE001 - any cache miss falls through to a download attempt
        pass
    try:
        return Path(snapshot_download(str(source), allow_patterns=_HUB_PATTERNS))
    except Exception as exc:  # noqa: BLE001 - network, auth, missing repo: all mean "not available here"
        raise CheckpointError(
            f"{source} is not in the huggingface_hub cache and could not be downloaded ({type(exc).__name__}); "
            "download it once on a connected machine or pass a local checkpoint directory "
            "(`bayou models tiny DIR` writes a randomly initialised one, to try the pipeline offline)"
        ) from exc


def _read_tensors(directory: Path) -> dict[str, torch.Tensor]:
    index = directory / "model.safetensors.index.json"
    if index.exists():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    tensors: dict[str, torch.Tensor] = {}
    for name in files:
        file = directory / name
        if not file.exists():
            raise CheckpointError(f"checkpoint file {name} is missing from {directory}")
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                tensors[key] = handle.get_tensor(key)
    return tensors


def _check_against(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    expected = model.state_dict()
    # lm_head may be tied to the embeddings in some configs; then the checkpoint need not carry it
    tied = {"lm_head.weight"} if model.config.tie_word_embeddings else set()
    missing = sorted(set(expected) - set(state) - tied)
    extra = sorted(set(state) - set(expected))
    if missing:
        raise CheckpointError(f"checkpoint lacks tensor(s): {', '.join(missing[:10])}")
    if extra:
        raise CheckpointError(f"unexpected tensor(s) in checkpoint: {', '.join(extra[:10])}")
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise CheckpointError(
                f"tensor {name} has shape {tuple(tensor.shape)}, the config implies {tuple(expected[name].shape)}"
            )


def read_config(directory: Path) -> dict[str, Any]:
    """config.json, checked: the H2OVL model type and every field bayou reads, of the right type."""
    if not (directory / "config.json").exists():
        raise CheckpointError(f"{directory} has no config.json")
    raw = read_json(directory / "config.json")
    check_h2ovl_config(raw)
    return raw


@dataclass(frozen=True)
class CheckpointTokenizers:
    vocabulary: PreTrainedTokenizerBase  # transformers' view of the vocabulary, for the grammar engine
    prompt: PromptTokenizer | FastPathTokenizer  # the ids the model is fed, as the published usage computes
    image_token_id: int


def load_tokenizers(directory: Path, raw: dict[str, Any]) -> CheckpointTokenizers:
    """The checkpoint's tokenizer, checked against the model: required tokens present, ids within rows."""
    vocabulary = _load_tokenizer(directory, tokenizer_config(directory))
    prompt = load_prompt_tokenizer(directory, vocabulary)
    image_token_id = _check_tokens(prompt, raw["llm_config"]["vocab_size"])
    return CheckpointTokenizers(vocabulary, prompt, image_token_id)


def _load_tokenizer(directory: Path, config: dict[str, Any]) -> PreTrainedTokenizerBase:
    """transformers' tokenizer of the checkpoint: the vocabulary as the grammar engine reads it."""
    from transformers.utils import logging as hf_logging

    files = [n for n in ("tokenizer.model", "tokenizer.json") if (directory / n).exists()]
    if not files:
        raise CheckpointError(f"{directory} has no tokenizer.model (nor tokenizer.json)")
    # AutoTokenizer peeks at config.json and warns that h2ovl_chat is not a transformers model type: true,
    # and irrelevant, since only the tokenizer files are used
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        # transformers 5 reads an unset `legacy` as false, the slow tokenizer the model was used with as true
        tokenizer = AutoTokenizer.from_pretrained(
            str(directory), trust_remote_code=False, legacy=config.get("legacy") is not False
        )
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever transformers raises, the file is what is wrong
        raise CheckpointError(
            f"{' / '.join(files)}: the tokenizer does not load ({type(exc).__name__}: {exc})"
        ) from exc
    finally:
        hf_logging.set_verbosity(verbosity)
    tokenizer.padding_side = "left"
    return tokenizer


def _check_tokens(prompt: PromptTokenizer | FastPathTokenizer, embedding_rows: int) -> int:
    """The required tokens exist and every id has an embedding row; returns the image context id."""
    missing = [t for t in REQUIRED_TOKENS if prompt.token_id(t) is None]
    if missing:
        raise CheckpointError(
            f"tokenizer lacks required token(s) {', '.join(missing)} (added_tokens.json / tokenizer_config.json)"
        )
    if prompt.size > embedding_rows:
        largest = max(prompt.added.values(), key=lambda t: t.id, default=None)
        named = f" (largest: {largest.content} = {largest.id})" if largest else ""
        raise CheckpointError(
            f"the tokenizer has {prompt.size} ids{named} but the model has {embedding_rows} embedding rows "
            "(config.json llm_config.vocab_size)"
        )
    image_token_id = prompt.token_id("<IMG_CONTEXT>")
    assert image_token_id is not None
    return image_token_id


def _revision(directory: Path, raw: dict[str, Any]) -> str:
    # a hub snapshot directory is named by its commit; a local one gets a digest of what defines it
    if directory.parent.name == "snapshots":
        return directory.name
    digest = hashlib.sha256(json.dumps(raw, sort_keys=True).encode())
    for file in sorted(directory.glob("*.safetensors")):
        digest.update(f"{file.name}:{file.stat().st_size}".encode())
    return "local-" + digest.hexdigest()[:12]


def attention_implementation(device: torch.device) -> str:
    """The attn_implementation the model is built with on `device`."""
    if device.type == "cuda":
        try:
            import flash_attn  # noqa: F401

            return "flash_attention_2"
        except ImportError:
            pass
    if device.type == "cpu":
        return attention.register()  # SDPA, with a faster decoding step on CPUs
    return "sdpa"


def build_network(
    config: InternVLConfig, dtype: torch.dtype, device: torch.device
) -> InternVLForConditionalGeneration:
    """transformers' network for `config`, as bayou runs it: its attention for `device`, activations in
    place, eval mode, no gradients. Its weights are whatever initialisation is in force."""
    model = InternVLForConditionalGeneration._from_config(
        config, dtype=dtype, attn_implementation=attention_implementation(device)
    )
    activations_in_place(model)
    return model.eval().requires_grad_(False)


def load_model(
    source: str | Path, *, device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None
) -> LoadedModel:
    """Build transformers' InternVLForConditionalGeneration from an H2OVL checkpoint, in eval mode."""
    directory = resolve_source(source)
    raw = read_config(directory)
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    tokens = load_tokenizers(directory, raw)
    config = to_internvl_config(raw, image_token_id=tokens.image_token_id)
    state = to_hf_state_dict(_read_tensors(directory))

    from transformers.initialization import no_init_weights

    with no_init_weights():  # every tensor is overwritten below: random init would be wasted time
        model = build_network(config, torch_dtype, torch_device)
    _check_against(model, state)
    model.load_state_dict(state, strict=False, assign=False)
    if config.tie_word_embeddings:
        model.tie_weights()
    model.to(device=torch_device, dtype=torch_dtype)
    log.info("loaded %s (%s) on %s as %s", source, _revision(directory, raw), torch_device, torch_dtype)
    return LoadedModel(
        model=model,
        tokenizer=tokens.vocabulary,
        prompt_tokenizer=tokens.prompt,
        image_token_id=tokens.image_token_id,
        settings=model_settings(raw),
        source=str(source),
        revision=_revision(directory, raw),
        device=torch_device,
        dtype=torch_dtype,
    )
