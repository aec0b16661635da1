"""Replaying a known answer through the grammar, as a model that writes it would, to measure jump-forward.

Random weights write noise, so what jump-forward saves and whether its tokens are right is measured on
answers a real model would write: ground truth laid out as the grammar lays it out. The reference split is
the tokenizer's own split of the whole answer (sentencepiece, no prefix space: the answer continues the
prompt). The model is assumed to write that split; each time the grammar forces text, the tokens
jump-forward would append are compared with the reference tokens at that point.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from extractor.constrained import JSON_LAYOUTS, GrammarCache, Vocabulary


@dataclass
class Replay:
    tokens: int = 0  # the answer's tokens: forward steps without jump-forward
    steps: int = 0  # forward steps with jump-forward (tokens it appends cost none)
    forced_spans: int = 0  # times jump-forward appended tokens
    split_differently: int = 0  # of those, spans whose tokens are not the reference's tokens there

    def add(self, other: Replay) -> None:
        self.tokens += other.tokens
        self.steps += other.steps
        self.forced_spans += other.forced_spans
        self.split_differently += other.split_differently


def answer_text(document: dict[str, Any], layout: str) -> str:
    """The document as the grammar lets a model write it in `layout` (free: as json.dumps writes it)."""
    separators = JSON_LAYOUTS[layout].get("separators", (", ", ": "))
    return json.dumps(document, separators=separators, ensure_ascii=False)


def schema_ordered(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """The document as a model writes it: every property, in the schema's order, null when absent."""
    ordered = {}
    for key, sub in schema["properties"].items():
        value = document.get(key)
        if isinstance(value, dict) and "properties" in sub:
            value = schema_ordered(value, sub)
        elif isinstance(value, list) and isinstance(sub.get("items"), dict) and "properties" in sub["items"]:
            value = [schema_ordered(v, sub["items"]) for v in value]
        ordered[key] = value
    return ordered


def greedy_longest_match(vocabulary: Vocabulary) -> Callable[[bytes, bytes], list[int]]:
    """Context-blind forcing, for comparison: the longest tokens that spell the forced bytes (bayou's
    jump-forward before it split forced text in its context)."""
    longest = vocabulary.longest_token

    def tokens(written: bytes, forced: bytes) -> list[int]:
        ids, position = [], 0
        while position < len(forced):
            for length in range(min(longest, len(forced) - position), 0, -1):
                token = vocabulary.ids_by_bytes.get(forced[position : position + length])
                if token is not None:
                    ids.append(token)
                    position += length
                    break
            else:
                break
        return ids

    return tokens


def replay(
    grammars: GrammarCache,
    schema: dict[str, Any],
    text: str,
    forced_tokens: Callable[[bytes, bytes], list[int]] | None = None,
) -> Replay:
    """Walk the reference split of `text` through the schema's grammar, forcing where the grammar forces.

    `forced_tokens(written, forced)` picks the tokens jump-forward appends (default: the vocabulary's);
    a span that differs from the reference is counted and the walk goes on along the reference.
    """
    vocabulary = grammars.vocabulary
    pick = forced_tokens or vocabulary.forced_tokens
    reference = vocabulary.continuation(text)
    matcher = grammars.matcher(schema)
    result = Replay(tokens=len(reference))
    written = bytearray()
    index = 0
    while index < len(reference):
        token = reference[index]
        if not matcher.accept_token(token):
            raise ValueError(
                f"the grammar refuses the answer at {bytes(written)[-40:]!r} + {vocabulary.token_bytes[token]!r}"
            )
        written += vocabulary.token_bytes[token]
        index += 1
        result.steps += 1
        forced = matcher.find_jump_forward_string().encode()
        if not forced or matcher.is_terminated():
            continue
        tokens = pick(bytes(written), forced)
        if not tokens:
            continue
        result.forced_spans += 1
        if tokens != reference[index : index + len(tokens)]:
            result.split_differently += 1
            continue
        for token in tokens:
            matcher.accept_token(token)
            written += vocabulary.token_bytes[token]
        index += len(tokens)
    return result
