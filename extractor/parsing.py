"""Recover the JSON object from a model's raw text output.

Small models wrap their JSON in ```json fences, add a sentence before or after it, or drift into Python
(single quotes, None/True/False) and trailing commas. Each of those is repaired here; anything else is a
failed outcome, never an exception, so one bad answer cannot stop a batch.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

MAX_OBJECT_STARTS = 50  # "{" positions tried per candidate text before giving up
_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)
_PYTHON_LITERALS = {"None": "null", "True": "true", "False": "false"}


@dataclass(frozen=True)
class ParseOutcome:
    ok: bool
    data: dict[str, Any] | None = None
    error: str | None = None
    repaired: bool = False  # the text was not valid JSON as it stood


def parse_json_output(text: Any) -> ParseOutcome:
    """The first JSON object in `text`, repaired if need be; a failed outcome when there is none."""
    if not isinstance(text, str):
        return ParseOutcome(False, error=f"expected text, got {type(text).__name__}")
    if not text.strip():
        return ParseOutcome(False, error="empty output")
    errors: list[str] = []
    for candidate in _candidates(text):
        for start in _object_starts(candidate):
            outcome = _parse_object(_balanced_object(candidate, start))
            if outcome.ok:
                return outcome
            errors.append(outcome.error or "invalid JSON")
    # the first attempt is the likeliest intended object, so its error is the informative one
    return ParseOutcome(False, error=errors[0] if errors else "no JSON object found")


def _candidates(text: str) -> list[str]:
    """Fenced blocks first (the model's own statement of where the JSON is), then the whole text."""
    return [match.group(1) for match in _FENCE.finditer(text)] + [text]


def _object_starts(text: str) -> list[int]:
    return [index for index, char in enumerate(text) if char == "{"][:MAX_OBJECT_STARTS]


def _balanced_object(text: str, start: int) -> str:
    """From `start` ("{") to its matching "}", skipping quoted strings; the rest of the text if unclosed."""
    depth, quote, index = 0, "", start
    while index < len(text):
        char = text[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
            if depth == 0:
                return text[start : index + 1]
        index += 1
    return text[start:]


def _parse_object(span: str) -> ParseOutcome:
    repaired = False
    try:
        value = json.loads(span, strict=False)
    except json.JSONDecodeError:
        try:
            value = json.loads(repair_json(span), strict=False)
        except json.JSONDecodeError as exc:
            return ParseOutcome(False, error=f"invalid JSON: {exc.msg} at char {exc.pos}")
        repaired = True
    if not isinstance(value, dict):
        return ParseOutcome(False, error=f"expected a JSON object, got {type(value).__name__}")
    return ParseOutcome(True, data=value, repaired=repaired)


def repair_json(text: str) -> str:
    """Rewrite the usual non-JSON of language models into JSON: single-quoted strings, Python literals,
    unquoted keys, trailing commas and // comments. Text inside double-quoted strings is left alone."""
    out: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == '"':
            end = _string_end(text, index, '"')
            out.append(text[index:end])
        elif char == "'":
            end = _string_end(text, index, "'")
            out.append(_requote(text[index + 1 : end - 1]))
        elif char.isalpha() or char == "_":
            end = _word_end(text, index)
            out.append(_bare_word(text[index:end], text[end:]))
        elif char == "," and _next_significant(text, index + 1) in ("}", "]", ""):
            end = index + 1
        elif text.startswith("//", index):
            end = text.find("\n", index)
            end = len(text) if end == -1 else end
        else:
            end = index + 1
            out.append(char)
        index = end
    return "".join(out)


def _string_end(text: str, start: int, quote: str) -> int:
    """Index just past the closing quote of the string opening at `start` (end of text if unclosed)."""
    index = start + 1
    while index < len(text):
        if text[index] == "\\":
            index += 2
            continue
        if text[index] == quote:
            return index + 1
        index += 1
    return len(text)


def _requote(body: str) -> str:
    unescaped = body.replace("\\'", "'")
    escaped = re.sub(r'(?<!\\)"', '\\"', unescaped)
    return f'"{escaped}"'


def _word_end(text: str, start: int) -> int:
    index = start
    while index < len(text) and (text[index].isalnum() or text[index] == "_"):
        index += 1
    return index


def _bare_word(word: str, rest: str) -> str:
    if rest.lstrip().startswith(":"):
        return json.dumps(word)  # an unquoted key
    return _PYTHON_LITERALS.get(word, word)


def _next_significant(text: str, start: int) -> str:
    rest = text[start:].lstrip()
    return rest[:1]
