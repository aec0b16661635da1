"""A document type's JSON Schema as an HTML form, and the submitted form back as typed JSON.

Field names are JSON pointers (`/address/city`, `/items/0/total_price`), so a field, its validation
issues and its confidence share one key. Kinds: text, number, integer, date, time, select, checkbox,
list (an array of strings, comma separated), rows (an array of objects: editable rows), group (an
object) and json (anything else, edited as JSON text).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ROW_PLACEHOLDER = "__i__"
_INTEGER = re.compile(r"-?[0-9]+")
_TIME = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")
_INDEX = re.compile(r"/[0-9]+(?=/|$)")


@dataclass
class FormField:
    pointer: str
    label: str
    kind: str
    help: str = ""
    value: str = ""
    checked: bool = False
    nullable: bool = False
    required: bool = False
    options: list[str] = field(default_factory=list)
    pattern: str | None = None
    max_length: int | None = None
    messages: list[str] = field(default_factory=list)
    children: list[FormField] = field(default_factory=list)
    columns: list[FormField] = field(default_factory=list)
    rows: list[list[FormField]] = field(default_factory=list)
    # grounding (api.review.grounding): the value is nowhere on the page; the licence barcode's value
    not_found: bool = False
    suggestion: str | None = None

    @property
    def flagged(self) -> bool:
        return bool(self.messages) or self.not_found or self.suggestion is not None


# --- schema + data -> fields -------------------------------------------------------------------------


def build_form(
    schema: Mapping[str, Any], data: Any, messages: Mapping[str, list[str]] | None = None
) -> list[FormField]:
    """The fields of an object schema filled from `data` (None: empty), each with the messages whose
    pointer names it."""
    messages = messages or {}
    values = data if isinstance(data, Mapping) else {}
    required = set(schema.get("required", []))
    return [
        _field(f"/{key}", key, sub, values.get(key), messages, key in required)
        for key, sub in schema.get("properties", {}).items()
    ]


def _field(
    pointer: str,
    key: str,
    schema: Mapping[str, Any],
    value: Any,
    messages: Mapping[str, list[str]],
    required: bool,
) -> FormField:
    types = _types(schema)
    nullable = "null" in types
    base = FormField(
        pointer=pointer,
        label=key.replace("_", " ").capitalize(),
        kind="text",
        help=schema.get("description", ""),
        nullable=nullable,
        required=required,
        messages=list(messages.get(pointer, [])),
    )
    kind = _kind(schema, types, value)
    base.kind = kind
    if kind == "group":
        base.children = build_form(schema, value, _below(messages, pointer))
        base.children = [_repoint(child, pointer) for child in base.children]
    elif kind == "rows":
        base.columns = _row_fields(pointer, ROW_PLACEHOLDER, schema["items"], None, {})
        rows = value if isinstance(value, list) else []
        base.rows = [
            _row_fields(pointer, str(i), schema["items"], row, messages) for i, row in enumerate(rows)
        ]
    elif kind == "checkbox":
        base.checked = value is True
    elif kind == "select":
        base.options = [_display(option) for option in schema["enum"] if option is not None]
        base.value = _display(value)
        if base.value and base.value not in base.options:
            base.options.append(base.value)
    elif kind in {"list", "json"}:
        base.value = form_text(kind, value)
    else:
        base.value = form_text(kind, value)
        base.pattern = schema.get("pattern") if kind == "text" else None
        base.max_length = schema.get("maxLength")
    return base


def _row_fields(
    pointer: str, index: str, item_schema: Mapping[str, Any], row: Any, messages: Mapping[str, list[str]]
) -> list[FormField]:
    prefix = f"{pointer}/{index}"
    cells = build_form(item_schema, row, _below(messages, prefix))
    return [_repoint(cell, prefix) for cell in cells]


def _below(messages: Mapping[str, list[str]], prefix: str) -> dict[str, list[str]]:
    """The messages under `prefix`, keyed relative to it."""
    return {key[len(prefix) :]: value for key, value in messages.items() if key.startswith(prefix + "/")}


def _repoint(child: FormField, prefix: str) -> FormField:
    child.pointer = prefix + child.pointer
    for grandchild in child.children:
        _repoint(grandchild, prefix)
    for row in child.rows:
        for cell in row:
            _repoint(cell, prefix)
    for column in child.columns:
        _repoint(column, prefix)
    return child


def _types(schema: Mapping[str, Any]) -> set[str]:
    declared = schema.get("type", [])
    return {declared} if isinstance(declared, str) else set(declared)


def _kind(schema: Mapping[str, Any], types: set[str], value: Any) -> str:
    main = types - {"null"}
    if "enum" in schema:
        return "select"
    if main == {"object"} and "properties" in schema:
        return "group"
    if main == {"array"}:
        items = schema.get("items", {})
        if _types(items) - {"null"} == {"object"} and "properties" in items:
            return "rows"
        if _types(items) == {"string"}:
            return "list"
        return "json"
    if main == {"boolean"}:
        return "checkbox" if "null" not in types else "select"
    if main == {"integer"}:
        return "integer"
    if main == {"number"}:
        return "number"
    if main == {"string"}:
        # a value the typed input could not show stays a text field, so nothing is lost silently
        if schema.get("format") == "date" and (value is None or _is_iso_date(value)):
            return "date"
        if schema.get("pattern", "").startswith("^([01][0-9]|2[0-3])") and (
            value is None or (isinstance(value, str) and _TIME.fullmatch(value))
        ):
            return "time"
        return "text"
    return "json"


def _is_iso_date(value: Any) -> bool:
    try:
        dt.date.fromisoformat(value)
    except (TypeError, ValueError):
        return False
    return isinstance(value, str) and len(value) == 10


def form_text(kind: str, value: Any) -> str:
    """A value as the form's control of this kind holds it (what parse_form reads back)."""
    if kind == "list":
        return ", ".join(_display(item) for item in value) if isinstance(value, list) else _display(value)
    if kind == "json":
        return "" if value is None else json.dumps(value, ensure_ascii=False)
    return _display(value)


def _display(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --- form -> data --------------------------------------------------------------------------------------


def parse_form(
    schema: Mapping[str, Any], form: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The typed document a submitted form describes, and the messages of fields that could not be read
    (keyed by pointer). Schema validation of the result is the caller's."""
    errors: dict[str, list[str]] = {}
    data = _parse_object("", schema, form, errors)
    return data, errors


def _parse_object(
    prefix: str, schema: Mapping[str, Any], form: Mapping[str, Any], errors: dict[str, list[str]]
) -> dict[str, Any]:
    return {
        key: _parse_value(f"{prefix}/{key}", sub, form, errors)
        for key, sub in schema.get("properties", {}).items()
    }


def _parse_value(
    pointer: str, schema: Mapping[str, Any], form: Mapping[str, Any], errors: dict[str, list[str]]
) -> Any:
    types = _types(schema)
    kind = _kind(schema, types, None)
    if kind == "group":
        return _parse_object(pointer, schema, form, errors)
    if kind == "rows":
        return _parse_rows(pointer, schema["items"], form, errors)
    if kind == "checkbox":
        return form.get(pointer) in {"on", "true", "1"}
    text = str(form.get(pointer) or "").strip()
    if kind == "list":
        return [part.strip() for part in text.split(",") if part.strip()]
    if not text:
        return None if "null" in types else _empty(types)
    try:
        return _typed(kind, text, schema, types)
    except ValueError as exc:
        errors.setdefault(pointer, []).append(str(exc))
        return text


def _empty(types: set[str]) -> Any:
    # an empty required string stays "", so schema validation names the problem (minLength)
    return "" if "string" in types else None


def _typed(kind: str, text: str, schema: Mapping[str, Any], types: set[str]) -> Any:
    if kind == "integer":
        if not _INTEGER.fullmatch(text):
            raise ValueError("a whole number is expected")
        return int(text)
    if kind == "number":
        return _number(text)
    if kind == "select":
        return _enum_value(text, schema["enum"])
    if kind == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError("not valid JSON") from exc
    return text


def _number(text: str) -> int | float:
    if _INTEGER.fullmatch(text):
        return int(text)
    try:
        number = float(text)
    except ValueError as exc:
        raise ValueError("a number is expected") from exc
    if not math.isfinite(number):
        raise ValueError("a finite number is expected")
    return number


def _enum_value(text: str, members: list[Any]) -> Any:
    for member in members:
        if member is not None and _display(member) == text:
            return member
    return text  # not a member: left for schema validation to report


def _parse_rows(
    pointer: str, item_schema: Mapping[str, Any], form: Mapping[str, Any], errors: dict[str, list[str]]
) -> list[Any]:
    """Rows in the order of their indices; gaps left by removed rows close up."""
    indices: set[int] = set()
    for name in form:
        if isinstance(name, str) and name.startswith(pointer + "/"):
            head = name[len(pointer) + 1 :].split("/", 1)[0]
            if head.isdigit():
                indices.add(int(head))
    rows = []
    for position, index in enumerate(sorted(indices)):
        row_errors: dict[str, list[str]] = {}
        rows.append(_parse_object(f"{pointer}/{index}", item_schema, form, row_errors))
        for key, value in row_errors.items():
            errors[f"{pointer}/{position}{key[len(f'{pointer}/{index}') :]}"] = value
    return rows


# --- comparing -----------------------------------------------------------------------------------------


def changed_pointers(before: Any, after: Any, pointer: str = "") -> list[str]:
    """The pointers of the leaves (or whole rows) that differ between two documents."""
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        keys = list(dict.fromkeys([*before, *after]))
        return [
            p for key in keys for p in changed_pointers(before.get(key), after.get(key), f"{pointer}/{key}")
        ]
    if isinstance(before, list) and isinstance(after, list) and _is_rows(before) and _is_rows(after):
        changed: list[str] = []
        for index in range(max(len(before), len(after))):
            if index >= len(before) or index >= len(after):
                changed.append(f"{pointer}/{index}")
            else:
                changed.extend(changed_pointers(before[index], after[index], f"{pointer}/{index}"))
        return changed
    if before == after and type(before) is type(after):
        return []
    return [pointer or "/"]


def _is_rows(value: list[Any]) -> bool:
    return all(isinstance(item, Mapping) for item in value)


def field_name(pointer: str) -> str:
    """A pointer without row numbers, naming the field across documents: /items/3/total_price ->
    items[].total_price."""
    return _INDEX.sub("[]", pointer).lstrip("/").replace("/", ".").replace(".[]", "[]")
