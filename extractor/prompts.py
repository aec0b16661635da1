"""The instruction text the model receives after the image placeholder, built from the document's schema.

Field names, descriptions and value formats all come from schemas/<type>.json, so a schema change changes
the prompt. PROMPT_VERSION counts changes to the wording around them; together with the schema version it
names the prompt ("receipt/1.0.0+p1"), which the caller stores with every result.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from extractor.schemas import MONEY_PATTERN, STATE_PATTERN, TIME_PATTERN, load_schema, schema_version

PROMPT_VERSION = "p1"

_GENERAL_RULES = (
    "- Use exactly the keys listed, each one every time, and no others.",
    "- Write null for a field that is not on the document or cannot be read; never guess.",
)
_FORMAT_RULES = {
    "date": "- Dates as YYYY-MM-DD, whatever the order printed.",
    "time": "- Times as HH:MM, 24-hour.",
    "money": '- Money as a string with two decimals, no currency sign or thousands separator, e.g. "1234.50".',
}
_LAST_RULE = "- Other text exactly as printed, on one line."


@dataclass(frozen=True)
class Prompt:
    doc_type: str
    text: str
    version: str  # e.g. "receipt/1.0.0+p1"
    schema_version: str


@cache
def build_prompt(doc_type: str) -> Prompt:
    schema = load_schema(doc_type)
    version = schema_version(doc_type)
    lines = [
        f"Document: {schema['title']}. {schema.get('description', '')}".strip(),
        "Extract its fields and answer with one JSON object.",
        "",
        "Fields:",
        *_field_lines(schema, indent=""),
        "",
        "Rules:",
        *_GENERAL_RULES,
        *(rule for kind, rule in _FORMAT_RULES.items() if kind in _value_kinds(schema)),
        _LAST_RULE,
        "",
        "Answer with the JSON object only, no other text.",
    ]
    return Prompt(doc_type, "\n".join(lines), f"{doc_type}/{version}+{PROMPT_VERSION}", version)


def _field_lines(schema: dict[str, Any], indent: str) -> list[str]:
    lines: list[str] = []
    for name, sub in schema.get("properties", {}).items():
        lines.append(f"{indent}- {name} ({type_phrase(sub)}): {sub.get('description', '')}".rstrip())
        nested = _nested_object(sub)
        if nested is not None:
            lines.extend(_field_lines(nested, indent + "  "))
    return lines


def _nested_object(schema: dict[str, Any]) -> dict[str, Any] | None:
    if "properties" in schema:
        return schema
    items = schema.get("items")
    if isinstance(items, dict) and "properties" in items:
        return items
    return None


def _value_kinds(schema: dict[str, Any]) -> set[str]:
    """Which of date, time, money occur anywhere in the schema (their rules are left out otherwise)."""
    own = {
        "date": schema.get("format") == "date",
        "time": schema.get("pattern") == TIME_PATTERN,
        "money": schema.get("pattern") == MONEY_PATTERN,
    }
    kinds = {kind for kind, present in own.items() if present}
    for sub in schema.get("properties", {}).values():
        kinds |= _value_kinds(sub)
    if isinstance(schema.get("items"), dict):
        kinds |= _value_kinds(schema["items"])
    return kinds


def type_phrase(schema: dict[str, Any]) -> str:
    """How a value must be written, in words: 'date YYYY-MM-DD or null', 'list of objects', ..."""
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    nullable = "null" in types
    if "enum" in schema:
        choices = [f'"{value}"' for value in schema["enum"] if value is not None]
        phrase = f"always {choices[0]}" if len(choices) == 1 else f"one of {', '.join(choices)}"
    else:
        phrase = " or ".join(_single_type_phrase(t, schema) for t in types if t != "null")
    return f"{phrase} or null" if nullable else phrase


def _single_type_phrase(json_type: str, schema: dict[str, Any]) -> str:
    pattern = schema.get("pattern")
    if json_type == "string":
        if schema.get("format") == "date":
            return "date YYYY-MM-DD"
        return {
            MONEY_PATTERN: 'money "0.00"',
            TIME_PATTERN: "time HH:MM",
            STATE_PATTERN: "2-letter USPS code",
        }.get(pattern, "digits" if _digits_only(pattern) else "string")
    if json_type == "array":
        items = schema.get("items", {})
        item = "objects with these keys" if "properties" in items else f"{type_phrase(items)} values"
        return f"list of {item}, [] when none"
    if json_type == "object":
        return "object with these keys"
    return {"boolean": "true or false", "integer": "whole number", "number": "number"}.get(
        json_type, json_type
    )


def _digits_only(pattern: Any) -> bool:
    return isinstance(pattern, str) and pattern.startswith("^[0-9]{") and pattern.endswith("}$")
