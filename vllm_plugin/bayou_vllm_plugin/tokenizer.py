"""vLLM tokenizer mode `h2ovl_slow`: prompts become the ids the published H2OVL usage feeds the model.

Why: vLLM tokenises prompts with transformers' fast tokenizer. For the published checkpoints (a sentencepiece
`tokenizer.model`, no tokenizer.json) that differs from the slow tokenizer the models were trained and
published with: transformers reads the unset `legacy` as false, and the fast tokenizer merges whitespace
runs ("▁▁") that sentencepiece keeps apart, so bayou's indented prompts reached the model as other ids.
bayou computes the slow path in extractor/model/tokenizer.py (PromptTokenizer, tested against transformers
4's slow tokenizer); this mode makes vLLM use that same code for text → ids, so `vllm serve --tokenizer-mode
h2ovl_slow` sees exactly the ids bayou's transformers engine feeds, in every request and at /tokenize.

How: the tokenizer vLLM would load (its cached transformers fast tokenizer) is kept for everything but
text → ids (decoding, the vocabulary the grammar engine reads, special tokens), and its `encode` and
`__call__` are those of PromptTokenizer, the way vLLM's own DeepSeek tokenizers specialise the HF one.

vLLM's H2OVL processor finds each image's `<image>` by the ids `encode("<image>")` gives and replaces them
by `<img>` + `<IMG_CONTEXT>`... + `</img>`, added tokens that split the text around them. So `<image>` is
split out the same way, as one id past the vocabulary and the model's rows: the replaced prompt is then
exactly PromptTokenizer's ids of the expanded text (and an `<image>` without an image is refused as out of
vocabulary instead of reaching the model).

A checkpoint without a tokenizer.model (only tokenizer.json) keeps the fast tokenizer: it is the
reference there, as in bayou's loader.

Imports: vLLM's environment has sentencepiece and protobuf but not bayou's dependencies; bayou's
distribution is installed there without them (vllm_plugin/install-cpu-venv.sh, vllm_plugin/Dockerfile) and
only the dependency-light extractor.model.tokenizer is imported from it.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

TOKENIZER_MODE = "h2ovl_slow"  # vllm serve --tokenizer-mode; bayou's extractor/vllm_engine.SERVER_FLAGS
IMAGE_PLACEHOLDER = "<image>"  # what vLLM's H2OVL processor replaces by an image's tokens
# the added tokens an image becomes: `<image>` strips its neighbours as they do
IMAGE_START, IMAGE_END = "<img>", "</img>"


def register() -> None:
    """The tokenizer mode, and the renderer vLLM looks up under the same name (its HF chat renderer)."""
    from vllm.renderers.registry import RENDERER_REGISTRY
    from vllm.tokenizers import TokenizerRegistry

    if TOKENIZER_MODE not in TokenizerRegistry.tokenizers:  # each vLLM process loads plugins once; be sure
        TokenizerRegistry.register(TOKENIZER_MODE, __name__, "H2OVLSlowTokenizer")
    if TOKENIZER_MODE not in RENDERER_REGISTRY.renderers:
        RENDERER_REGISTRY.register(TOKENIZER_MODE, "vllm.renderers.hf", "HfRenderer")


class H2OVLSlowTokenizer:
    """The class vLLM's TokenizerRegistry names: `from_pretrained` builds the tokenizer vLLM uses."""

    @classmethod
    def from_pretrained(cls, path_or_repo_id: str | Path, *args: Any, **kwargs: Any) -> Any:
        from vllm.tokenizers.hf import CachedHfTokenizer
        from vllm.transformers_utils.repo_utils import get_non_weight_snapshot_path

        directory = Path(
            get_non_weight_snapshot_path(
                str(path_or_repo_id),
                revision=kwargs.get("revision"),
                cache_dir=kwargs.get("download_dir"),
                token=kwargs.get("token"),
            )
        )
        fast = CachedHfTokenizer.from_pretrained(str(directory), *args, **kwargs)
        if not (directory / "tokenizer.model").exists():
            return fast
        return with_published_prompt_ids(fast, directory)


def _model_rows(directory: Path) -> int:
    """The language model's embedding rows (config.json's llm_config.vocab_size), 0 if it does not say."""
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        return int((config.get("llm_config") or config.get("text_config") or {}).get("vocab_size") or 0)
    except (OSError, ValueError, TypeError, AttributeError):
        return 0


def slow_path(directory: Path) -> Any:
    """bayou's PromptTokenizer of the checkpoint, with vLLM's image placeholder split out as one id."""
    from extractor.model.tokenizer import AddedToken, PromptTokenizer

    prompt = PromptTokenizer(directory)
    start, end = prompt.added.get(IMAGE_START), prompt.added.get(IMAGE_END)
    prompt.add_placeholder(
        AddedToken(
            IMAGE_PLACEHOLDER,
            max(prompt.size, _model_rows(directory)),
            lstrip=bool(start and start.lstrip),
            rstrip=bool(end and end.rstrip),
        )
    )
    return prompt


def with_published_prompt_ids(fast: Any, directory: Path) -> Any:
    """`fast` (vLLM's cached HF tokenizer) with text → ids by the published slow path."""
    from transformers import BatchEncoding

    prompt = slow_path(directory)

    class PublishedPromptIds(fast.__class__):  # type: ignore[misc, valid-type]
        def encode(  # type: ignore[override]
            self,
            text: str,
            truncation: bool | None = None,
            max_length: int | None = None,
            add_special_tokens: bool = True,
            **kwargs: Any,
        ) -> list[int]:
            ids = prompt.encode(text, add_special_tokens=add_special_tokens)
            if truncation and max_length is not None and len(ids) > max_length:
                ids = ids[-max_length:] if self.truncation_side == "left" else ids[:max_length]
            return ids

        def __call__(  # type: ignore[override]
            self,
            text: str | list[str],
            text_pair: str | None = None,
            add_special_tokens: bool = True,
            truncation: bool = False,
            max_length: int | None = None,
            **kwargs: Any,
        ) -> BatchEncoding:
            if text_pair is not None or kwargs.get("return_offsets_mapping"):
                raise ValueError(f"tokenizer mode {TOKENIZER_MODE} encodes single texts, without offsets")
            single = isinstance(text, str)
            ids = [
                self.encode(
                    t, truncation=truncation, max_length=max_length, add_special_tokens=add_special_tokens
                )
                for t in ([text] if single else text)
            ]
            masks = [[1] * len(i) for i in ids]
            data = (
                {"input_ids": ids[0], "attention_mask": masks[0]}
                if single
                else {"input_ids": ids, "attention_mask": masks}
            )
            return BatchEncoding(data, tensor_type=kwargs.get("return_tensors"))

        def num_special_tokens_to_add(self, pair: bool = False) -> int:
            return int(prompt.add_bos) + int(prompt.add_eos)

        def __reduce__(self) -> tuple[Any, tuple[Any, Path]]:
            # vLLM copies tokenizers (a pool per renderer thread): rebuild around a copy of the fast one
            return with_published_prompt_ids, (fast, directory)

    PublishedPromptIds.__name__ = f"PublishedPromptIds{fast.__class__.__name__}"
    tokenizer = copy.copy(fast)
    tokenizer.__class__ = PublishedPromptIds
    return tokenizer
