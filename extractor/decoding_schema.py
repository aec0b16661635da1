"""The schema the grammar engine decodes with: the document schema, made finite and exact for decoding.

Validation uses the document schema as written. For decoding we rewrite it so that (a) every string and
array is bounded, which lets even a random model close its JSON within the token budget, (b) `date` and
`time` formats become patterns that only admit real calendar dates and clock times, and (c) length-bounded
free strings exclude control characters (xgrammar's bounded-string rule would otherwise admit them, and
they are invalid in JSON).
"""

from __future__ import annotations

import copy
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


def _rewrite(node: Any) -> Any:
    if isinstance(node, list):
        return [_rewrite(item) for item in node]
    if not isinstance(node, dict):
        return node
    for key, value in list(node.items()):
        if isinstance(value, dict | list):
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
        return
    low = int(node.pop("minLength", 0))
    high = int(node.pop("maxLength", DEFAULT_MAX_LENGTH))
    node["pattern"] = rf'^[^"\\\x00-\x1f]{{{low},{high}}}$'
