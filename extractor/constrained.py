"""Schema-constrained decoding with xgrammar (the grammar engine vLLM uses).

Three jobs: compile a JSON Schema into a token-level grammar (cached per schema), find the tokens the
grammar forces next (jump-forward: appended without a sampling step of their own), and, when the token
budget is nearly spent, steer towards closing the JSON so that even a random model ends with output that
parses and validates.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import xgrammar as xgr
from transformers import PreTrainedTokenizerBase

from extractor.decoding_schema import decoding_schema

_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")
# near the end of the token budget: the first of these the grammar allows is taken, which closes what is open
# soonest (a string, then a number, an array, an object) and gives remaining values their shortest form
_CLOSERS_INSIDE_STRING = (b'"', b".", b"0", b"-", b"a")
_CLOSERS_OUTSIDE_STRING = (b"null", b"]", b"}", b",", b"0", b"false", b'"', b"[", b"{")

# How the grammar lets the answer's JSON be laid out (BAYOU_JSON_LAYOUT). The model was tuned on JSON
# written in some style, and greedy decoding under a mask that forbids its habitual separator can derail
# it; the style of its training targets is not published. `spaced` is the default because it is what
# Python's json.dumps writes (", " and ": "), the form fine-tuning targets built by Python pipelines take;
# `compact` saves a token per field where a model is known to write it; `free` lets the model choose any
# whitespace between tokens, bounded so that a random model still closes its JSON within the budget.
FREE_WHITESPACE_LIMIT = 16
JSON_LAYOUTS: dict[str, dict[str, Any]] = {
    "spaced": {"any_whitespace": False, "separators": (", ", ": ")},
    "compact": {"any_whitespace": False, "separators": (",", ":")},
    "free": {"any_whitespace": True, "max_whitespace_cnt": FREE_WHITESPACE_LIMIT},
}
DEFAULT_JSON_LAYOUT = "spaced"


@dataclass
class Vocabulary:
    """The tokenizer as the grammar engine sees it: each id's exact bytes, and how the tokenizer splits text."""

    info: xgr.TokenizerInfo
    special_ids: frozenset[int]
    byte_fallback_ids: frozenset[int]  # Llama-style <0xNN> tokens
    continuation: Callable[[str], list[int]]  # the tokenizer's split of text that continues a sequence

    @cached_property
    def token_bytes(self) -> list[bytes]:
        return list(self.info.decoded_vocab)

    @cached_property
    def ids_by_bytes(self) -> dict[bytes, int]:
        table: dict[bytes, int] = {}
        # <0xNN> tokens first, so a merged token that decodes to the same bytes takes precedence
        order = sorted(range(len(self.token_bytes)), key=lambda i: i not in self.byte_fallback_ids)
        for token_id in order:
            raw = self.token_bytes[token_id]
            if raw and token_id not in self.special_ids:
                table[raw] = token_id
        return table

    @cached_property
    def _open_prefixes(self) -> frozenset[bytes]:
        """Every proper prefix of every token: text ending in one of these may merge with what follows."""
        return frozenset(raw[:cut] for raw in self.ids_by_bytes for cut in range(1, len(raw)))

    @cached_property
    def longest_token(self) -> int:
        return max(len(raw) for raw in self.ids_by_bytes)

    def open_from(self, text: bytes) -> int:
        """Where the earliest token that could run on past the end of `text` would start (len(text): none)."""
        for start in range(max(0, len(text) - self.longest_token + 1), len(text)):
            if text[start:] in self._open_prefixes:
                return start
        return len(text)

    def forced_tokens(self, generated: bytes | bytearray, forced: bytes) -> list[int]:
        """Tokens for `forced`, the bytes the grammar allows next, as the tokenizer splits it in its context.

        The tokenizer's split of the whole answer is the reference (what the model saw in training): the
        tokens come from splitting the answer's text so far plus `forced` and are kept only where that
        split is final — they start where the text so far ends (no token of the split spans the join) and
        end before any token could run on into what the model writes next. The rest is left to the model.
        """
        # sentencepiece never merges across the start of a space, so the context can start there
        context = bytes(generated[max(generated.rfind(b" "), 0) :])
        try:
            ids = self.continuation((context + forced).decode("utf-8"))
        except UnicodeDecodeError:
            return []
        position, kept, ends = 0, [], []
        for token_id in ids:
            if position >= len(context):
                kept.append(token_id)
            position += len(self.token_bytes[token_id])
            if position > len(context) and not kept:
                return []  # the tokenizer would merge the model's last token with the forced text
            if kept:
                ends.append(position)
        # what the model writes next may merge with the end of the forced text: stop before that can happen
        settled = self.open_from(context + forced)
        while kept and ends[len(kept) - 1] > settled:
            kept.pop()
        return kept

    def closer_ids(self, inside_string: bool) -> list[int]:
        wanted = _CLOSERS_INSIDE_STRING if inside_string else _CLOSERS_OUTSIDE_STRING
        return [self.ids_by_bytes[raw] for raw in wanted if raw in self.ids_by_bytes]


def build_vocabulary(
    tokenizer: PreTrainedTokenizerBase,
    vocab_size: int,
    stop_ids: Sequence[int],
    continuation: Callable[[str], list[int]],
) -> Vocabulary:
    info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=list(stop_ids))
    special = frozenset(tokenizer.all_special_ids) | frozenset(tokenizer.get_added_vocab().values())
    byte_fallback = frozenset(
        token_id for token, token_id in tokenizer.get_vocab().items() if _BYTE_TOKEN.fullmatch(token)
    )
    return Vocabulary(
        info=info, special_ids=special, byte_fallback_ids=byte_fallback, continuation=continuation
    )


def json_grammar(schema: dict[str, Any], layout: str = DEFAULT_JSON_LAYOUT) -> xgr.Grammar:
    """The grammar an answer to `schema` is held to, by either engine: bayou's decoding schema (finite
    patterns and lengths, extractor/decoding_schema.py), in the schema's property order, laid out as `layout`
    says. The vLLM engine sends its EBNF text, so that the server constrains exactly as bayou does."""
    if layout not in JSON_LAYOUTS:
        raise ValueError(f"unknown JSON layout {layout!r}; one of {', '.join(JSON_LAYOUTS)}")
    return xgr.Grammar.from_json_schema(
        json.dumps(decoding_schema(schema)), strict_mode=True, **JSON_LAYOUTS[layout]
    )


class GrammarCache:
    """Compiled grammars per schema; compiling is the slow part (milliseconds to a second), matching is cheap."""

    def __init__(self, vocabulary: Vocabulary, layout: str = DEFAULT_JSON_LAYOUT) -> None:
        if layout not in JSON_LAYOUTS:
            raise ValueError(f"unknown JSON layout {layout!r}; one of {', '.join(JSON_LAYOUTS)}")
        self.vocabulary = vocabulary
        self.layout = layout
        # xgrammar's own compile cache crashes on some nested schemas (0.2.8); the dict below suffices
        self._compiler = xgr.GrammarCompiler(vocabulary.info, cache_enabled=False)
        self._compiled: dict[str, xgr.CompiledGrammar] = {}
        self._shortest: dict[str, int] = {}

    def compiled(self, schema: dict[str, Any]) -> xgr.CompiledGrammar:
        key = json.dumps(schema, sort_keys=True)
        if key not in self._compiled:
            self._compiled[key] = self._compiler.compile_grammar(json_grammar(schema, self.layout))
        return self._compiled[key]

    def matcher(self, schema: dict[str, Any]) -> xgr.GrammarMatcher:
        return xgr.GrammarMatcher(self.compiled(schema), terminate_without_stop_token=True)

    def closing_reserve(self, schema: dict[str, Any]) -> int:
        """Tokens to keep in hand for closing the JSON from wherever the model is.

        Measured, not guessed: the closing strategy is run from the start with no model, which gives the
        length of the shortest document it writes; twice that covers finishing an open array item too.
        """
        return 2 * self.shortest_answer(schema) + 16

    def shortest_answer(self, schema: dict[str, Any]) -> int:
        """Tokens of the shortest answer the closing strategy writes for `schema`: a budget below it
        cannot hold a valid document."""
        key = json.dumps(schema, sort_keys=True)
        if key not in self._shortest:
            self._shortest[key] = self._shortest_completion(self.matcher(schema))
        return self._shortest[key]

    def _shortest_completion(self, matcher: xgr.GrammarMatcher, limit: int = 100_000) -> int:
        strings = JsonStringTracker()
        bitmask = xgr.allocate_token_bitmask(1, self.vocabulary.info.vocab_size)
        count = 0
        written = bytearray()
        while not matcher.is_terminated() and count < limit:
            forced = matcher.find_jump_forward_string().encode()
            for token in self.vocabulary.forced_tokens(bytes(written), forced):
                if not matcher.accept_token(token):
                    break
                strings.feed(self.vocabulary.token_bytes[token])
                written += self.vocabulary.token_bytes[token]
                count += 1
            if matcher.is_terminated():
                break
            matcher.fill_next_token_bitmask(bitmask, 0)
            allowed = _allowed_ids(bitmask)
            token = next((t for t in self.vocabulary.closer_ids(strings.inside) if t in allowed), None)
            if token is None:
                token = min(t for t in allowed if t not in self.vocabulary.special_ids)
            matcher.accept_token(token)
            strings.feed(self.vocabulary.token_bytes[token])
            written += self.vocabulary.token_bytes[token]
            count += 1
        return count


def _allowed_ids(bitmask: Any) -> set[int]:
    words = bitmask[0].tolist()
    return {
        index * 32 + bit for index, word in enumerate(words) if word for bit in range(32) if (word >> bit) & 1
    }


@dataclass
class JsonStringTracker:
    """Whether the bytes emitted so far end inside a JSON string (for the closing strategy)."""

    inside: bool = False
    escaped: bool = False

    def feed(self, raw: bytes) -> None:
        for byte in raw:
            if self.inside:
                if self.escaped:
                    self.escaped = False
                elif byte == 0x5C:  # backslash
                    self.escaped = True
                elif byte == 0x22:
                    self.inside = False
            elif byte == 0x22:
                self.inside = True
