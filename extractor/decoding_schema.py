"""The schema the grammar engine decodes with: the document schema, made finite and exact for decoding.

Validation uses the document schema as written. For decoding we rewrite it so that (a) every string and
array is bounded, which lets even a random model close its JSON within the token budget, (b) `date` and
`time` formats become patterns that only admit real calendar dates and clock times, and (c) length-bounded
free strings exclude control characters (xgrammar's bounded-string rule would otherwise admit them, and
they are invalid in JSON).
"""

from __future__ import annotations

import copy
import re
from typing import Any

DEFAULT_MAX_LENGTH = 256
DEFAULT_MAX_ITEMS = 64

_YEAR = r"(?:18|19|20|21)\d{2}"
_LEAP_YEAR = r"(?:(?:18|19|20|21)(?:0[48]|[2468][048]|[13579][26])|2000)"
DATE_PATTERN = (
    rf"^(?:{_YEAR}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)"
    rf"|02-(?:0[1-9]|1\d|2[0-8]))|{_LEAP_YEAR}-02-29)$"
)
TIME_PATTERN = r"^(?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d)?$"
_FORMAT_PATTERNS = {"date": DATE_PATTERN, "time": TIME_PATTERN}


def decoding_schema(schema: dict[str, Any]) -> dict[str, Any]:
    return _rewrite(copy.deepcopy(schema))


def _types(node: dict[str, Any]) -> set[str]:
    declared = node.get("type")
    if isinstance(declared, list):
        return set(declared)
    return {declared} if isinstance(declared, str) else set()


_SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")  # name → schema maps


def _rewrite(node: Any) -> Any:
    """Rewrite one schema node (and, recursively, the schemas inside it)."""
    if isinstance(node, list):
        return [_rewrite(item) for item in node]
    if not isinstance(node, dict):
        return node
    for key, value in list(node.items()):
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            # keys here are property names, not keywords: a property may well be called "description"
            node[key] = {name: _rewrite(sub) for name, sub in value.items()}
        elif isinstance(value, dict | list) and key not in ("enum", "const", "required", "examples"):
            node[key] = _rewrite(value)
    types = _types(node)
    if "string" in types and "enum" not in node and "const" not in node:
        _bound_string(node)
    if "array" in types:
        node.setdefault("maxItems", DEFAULT_MAX_ITEMS)
    # annotations the grammar does not need; dropping them keeps compiled grammars small and cacheable
    for annotation in ("description", "examples", "title", "$comment"):
        node.pop(annotation, None)
    return node


def _bound_string(node: dict[str, Any]) -> None:
    fmt = node.pop("format", None)
    if fmt in _FORMAT_PATTERNS and "pattern" not in node:
        node["pattern"] = _FORMAT_PATTERNS[fmt]
    if "pattern" in node:
        # xgrammar ignores maxLength beside a pattern, so the pattern itself must be finite
        limit = int(node.pop("maxLength", DEFAULT_MAX_LENGTH))
        node.pop("minLength", None)
        node["pattern"] = bounded_pattern(node["pattern"], limit)
        return
    low = int(node.pop("minLength", 0))
    high = int(node.pop("maxLength", DEFAULT_MAX_LENGTH))
    node["pattern"] = rf'^[^"\\\x00-\x1f]{{{low},{high}}}$'


_OPEN_RANGE = re.compile(r"\{(\d+),\}")


def bounded_pattern(pattern: str, max_length: int) -> str:
    """The pattern with its unbounded repetitions capped so that no match is longer than `max_length`.

    The cap is the largest one whose longest match still fits (measured with Python's regex parser), so
    `^-?[0-9]+\\.[0-9]{2}$` with maxLength 16 becomes `^-?[0-9]{1,12}\\.[0-9]{2}$`.
    """
    if bound_quantifiers(pattern, 1) == pattern:
        return pattern
    low, high = 0, max_length
    while low < high:
        middle = (low + high + 1) // 2
        if _longest_match(bound_quantifiers(pattern, middle)) <= max_length:
            low = middle
        else:
            high = middle - 1
    return bound_quantifiers(pattern, max(low, 1))


def _longest_match(pattern: str) -> int:
    return re._parser.parse(pattern).getwidth()[1]  # type: ignore[attr-defined]


def bound_quantifiers(pattern: str, limit: int) -> str:
    """Replace `+`, `*` and `{n,}` outside character classes by repetitions of at most `limit`."""
    out: list[str] = []
    index, in_class = 0, False
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            out.append(pattern[index : index + 2])
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char in "+*":
            char = f"{{{1 if char == '+' else 0},{limit}}}"
        elif char == "{":
            match = _OPEN_RANGE.match(pattern, index)
            if match:
                out.append(f"{{{match.group(1)},{max(limit, int(match.group(1)))}}}")
                index = match.end()
                continue
        out.append(char)
        index += 1
    return "".join(out)
