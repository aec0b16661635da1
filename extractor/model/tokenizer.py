"""The token ids the published usage feeds H2OVL, computed the way it computes them.

The published checkpoints ship a sentencepiece `tokenizer.model` (the Danube models' Mistral vocabulary) and
ten added tokens, and their usage loads it with transformers' slow `LlamaTokenizer` (`use_fast=False`) and
tokenises the whole templated query. `PromptTokenizer` reproduces that path on sentencepiece itself:

- the text is split on the added tokens (longest match), each added token is one id;
- each piece of text between them goes through sentencepiece; with `legacy` (the slow tokenizer's
  behaviour when tokenizer_config.json says nothing) every piece gets sentencepiece's dummy-prefix space,
  otherwise only the start of the whole text does;
- `<s>` first when `add_bos_token` (default true), `</s>` last when `add_eos_token`.

Why not the fast tokenizer transformers builds from the same file: it merges whitespace runs that
sentencepiece keeps apart, and transformers 5 defaults `legacy` to false where the slow tokenizer defaulted
to true, so its ids differ from the trained input on ordinary prompts. tests/test_prompt_ids.py checks this
class against transformers 4's slow tokenizer on the real 32k Mistral model.

A checkpoint with only a tokenizer.json gets the fast tokenizer's ids: there is no slow path to follow.

This module is also the vLLM server's tokenizer (vllm_plugin/bayou_vllm_plugin/tokenizer.py wraps it), so it
stays importable with the standard library, sentencepiece and protobuf alone: nothing here may import torch,
transformers or the rest of bayou beyond extractor.errors (extractor/model/__init__.py imports lazily for it).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from extractor.errors import CheckpointError

SPIECE_SPACE = "▁"


@dataclass(frozen=True)
class AddedToken:
    content: str
    id: int
    lstrip: bool = False
    rstrip: bool = False
    special: bool = True


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path.name}: not readable JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path.name}: expected a JSON object, found {type(data).__name__}")
    return data


def tokenizer_config(directory: Path) -> dict[str, Any]:
    path = directory / "tokenizer_config.json"
    config = read_json(path) if path.exists() else {}
    for flag in ("add_bos_token", "add_eos_token", "legacy"):
        if flag in config and config[flag] is not None and not isinstance(config[flag], bool):
            raise CheckpointError(
                f"tokenizer_config.json: {flag} must be true or false, not {config[flag]!r}"
            )
    return config


def added_tokens(directory: Path, config: dict[str, Any]) -> dict[str, AddedToken]:
    """The added tokens with their ids: tokenizer_config's added_tokens_decoder, else added_tokens.json."""
    found: dict[str, AddedToken] = {}
    decoder = config.get("added_tokens_decoder") or {}
    if not isinstance(decoder, dict):
        raise CheckpointError("tokenizer_config.json: added_tokens_decoder must be an object")
    for key, entry in decoder.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("content"), str) or not key.isdigit():
            raise CheckpointError(f"tokenizer_config.json: added_tokens_decoder entry {key!r} is malformed")
        found[entry["content"]] = AddedToken(
            entry["content"],
            int(key),
            lstrip=bool(entry.get("lstrip", False)),
            rstrip=bool(entry.get("rstrip", False)),
            special=bool(entry.get("special", True)),
        )
    path = directory / "added_tokens.json"
    if path.exists():
        for content, token_id in read_json(path).items():
            if not isinstance(token_id, int) or isinstance(token_id, bool):
                raise CheckpointError(f"added_tokens.json: the id of {content!r} must be an integer")
            if content in found and found[content].id != token_id:
                raise CheckpointError(
                    f"added_tokens.json gives {content!r} id {token_id}, tokenizer_config.json {found[content].id}"
                )
            found.setdefault(content, AddedToken(content, token_id))
    return found


class PromptTokenizer:
    """Text ↔ ids exactly as the published usage's slow tokenizer does it (see the module docstring)."""

    def __init__(self, directory: Path) -> None:
        import sentencepiece as spm

        self.config = tokenizer_config(directory)
        self.legacy: bool = self.config.get("legacy") is not False  # unset means legacy in the slow tokenizer
        self.add_bos: bool = self.config.get("add_bos_token", True) is not False
        self.add_eos: bool = bool(self.config.get("add_eos_token", False))
        model_file = directory / "tokenizer.model"
        try:
            self._sp = spm.SentencePieceProcessor(model_file=str(model_file))
        except (OSError, RuntimeError) as exc:
            raise CheckpointError(f"tokenizer.model: not a sentencepiece model ({exc})") from exc
        self.base_size = self._sp.get_piece_size()
        self.added = added_tokens(directory, self.config)
        for token in self.added.values():
            in_base = token.id < self.base_size and self._sp.id_to_piece(token.id) == token.content
            if token.id < self.base_size and not in_base:
                raise CheckpointError(
                    f"added token {token.content!r} has id {token.id}, which is the base vocabulary's "
                    f"{self._sp.id_to_piece(token.id)!r}"
                )
        self.bos_id = self._sp.bos_id()
        self.eos_id = self._sp.eos_id()
        self.unk_id = self._sp.unk_id()
        pad = self.config.get("pad_token")
        pad = pad.get("content") if isinstance(pad, dict) else pad
        self.pad_id = self.token_id(pad) if isinstance(pad, str) and self.token_id(pad) is not None else 0
        self._skip_on_decode = {t.id for t in self.added.values() if t.special} | {
            i for i in (self.bos_id, self.eos_id, self.unk_id) if i >= 0
        }
        self._splitter = self._compile_splitter()

    def _compile_splitter(self) -> re.Pattern[str] | None:
        if not self.added:
            return None
        return re.compile("|".join(re.escape(t) for t in sorted(self.added, key=len, reverse=True)))

    def add_placeholder(self, token: AddedToken) -> None:
        """Make `token.content` one id of its own, split out of the text as the added tokens are.

        For a serving stack that finds a placeholder by its ids and replaces it by added tokens before the
        model sees the prompt (vLLM's `<image>`): splitting the text there as at those added tokens makes the
        replaced ids the ones the expanded text has. The id must be one no text or model row has.
        """
        if token.id < self.size or token.content in self.added:
            raise ValueError(f"placeholder {token.content!r}: id {token.id} is in use or the text is a token")
        self.added[token.content] = token
        self._skip_on_decode.add(token.id)
        self._splitter = self._compile_splitter()

    @property
    def size(self) -> int:
        """Ids in use: the base vocabulary and every added token."""
        return max([self.base_size - 1, *(t.id for t in self.added.values())]) + 1

    def token_id(self, token: str) -> int | None:
        if token in self.added:
            return self.added[token].id
        piece = self._sp.piece_to_id(token)
        return piece if self._sp.id_to_piece(piece) == token else None

    @cached_property
    def _no_prefix(self):
        """The same sentencepiece model without the dummy-prefix space (non-legacy pieces, continuations)."""
        import sentencepiece as spm
        from sentencepiece import sentencepiece_model_pb2

        proto = sentencepiece_model_pb2.ModelProto.FromString(self._sp.serialized_model_proto())
        proto.normalizer_spec.add_dummy_prefix = False
        processor = spm.SentencePieceProcessor()
        processor.LoadFromSerializedProto(proto.SerializeToString())
        return processor

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        """The ids of a whole model input: what `tokenizer(text).input_ids` gives on the slow path
        (`<s>`/`</s>` as the config asks, unless `add_special_tokens` is false)."""
        if not self.legacy and text:
            # the non-legacy slow tokenizer treats ▁ as a space and puts one prefix space on the whole text
            text = SPIECE_SPACE + text.replace(SPIECE_SPACE, " ")
        parts = self._split(text)
        if not self.legacy and len(parts) > 1 and parts[0] == (SPIECE_SPACE, False) and parts[1][1]:
            parts = parts[1:]  # a lone prefix space before an added token: the slow tokenizer drops it
        ids: list[int] = []
        for piece, is_added in parts:
            if is_added:
                ids.append(self.added[piece].id)
            elif piece:
                ids += self._encode_text(piece)
        if not add_special_tokens:
            return ids
        return [self.bos_id] * self.add_bos + ids + [self.eos_id] * self.add_eos

    def _encode_text(self, text: str) -> list[int]:
        if self.legacy:
            return self._sp.encode(text)
        if not text.startswith((SPIECE_SPACE, " ")):
            return self._no_prefix.encode(text)
        # a leading space must survive sentencepiece: encode behind the unknown token's text, then drop it
        marker = self._sp.id_to_piece(self.unk_id)
        skip = len(self._no_prefix.encode(marker))
        return self._no_prefix.encode(marker + text)[skip:]

    def _split(self, text: str) -> list[tuple[str, bool]]:
        """Text and added tokens in order, with the added tokens' lstrip/rstrip applied to their neighbours."""
        if self._splitter is None:
            return [(text, False)]
        parts: list[tuple[str, bool]] = []
        position = 0
        for match in self._splitter.finditer(text):
            parts.append((text[position : match.start()], False))
            parts.append((match.group(), True))
            position = match.end()
        parts.append((text[position:], False))
        for index, (piece, is_added) in enumerate(parts):
            if not is_added:
                continue
            token = self.added[piece]
            if token.rstrip and index + 1 < len(parts):
                parts[index + 1] = (parts[index + 1][0].lstrip(), False)
            if token.lstrip and index > 0:
                parts[index - 1] = (parts[index - 1][0].rstrip(), False)
        return parts

    def continuation(self, text: str) -> list[int]:
        """How sentencepiece splits `text` where it continues a sequence (no prefix space of its own)."""
        return self._no_prefix.encode(text)

    def decode(self, ids: list[int]) -> str:
        """`batch_decode(..., skip_special_tokens=True)` then strip, as the published usage reads answers."""
        kept = [i for i in ids if i not in self._skip_on_decode and i < self.base_size]
        return self._sp.decode(kept).strip()


class FastPathTokenizer:
    """For a checkpoint that ships only tokenizer.json: transformers' fast tokenizer is the reference then."""

    legacy = False

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self.added = {
            content: AddedToken(content, token_id)
            for content, token_id in tokenizer.get_added_vocab().items()
        }
        self.bos_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else -1
        self.eos_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else -1
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.base_size = tokenizer.vocab_size

    @property
    def size(self) -> int:
        return len(self._tokenizer)

    def token_id(self, token: str) -> int | None:
        return self._tokenizer.get_vocab().get(token)

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        return list(self._tokenizer(text, add_special_tokens=add_special_tokens).input_ids)

    def continuation(self, text: str) -> list[int]:
        # the BPE model alone: no normaliser or pre-tokeniser adding a prefix space
        return [
            t.id for t in self._tokenizer.backend_tokenizer.model.tokenize(text.replace(" ", SPIECE_SPACE))
        ]

    def decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=True).strip()


def load_prompt_tokenizer(directory: Path, fast: Any) -> PromptTokenizer | FastPathTokenizer:
    """The slow path where the checkpoint has a sentencepiece model (the published layout), else the fast one."""
    if (directory / "tokenizer.model").exists():
        return PromptTokenizer(directory)
    return FastPathTokenizer(fast)
