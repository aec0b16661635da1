"""The document-type schemas (schemas/*.json, shipped as package data) and the Pydantic models derived from them.

The JSON Schema files are the single source of truth: adding a document type means adding a file, and the
Pydantic models are generated from the files rather than written by hand, so the two cannot drift apart.

Conventions of the files:
* every key is required, and a field the document may lack is nullable (`["string", "null"]`) rather than
  optional: the model always writes every key, so constrained decoding emits one fixed shape, and "not on
  the document" is an explicit null instead of an omission that looks like forgetting;
* `x-bayou-version` (semver) changes with any field change, `x-bayou-checks` names the cross-field checks of
  extractor/checks.py, and `examples` holds one complete, valid document;
* only keywords a grammar engine compiles (type, enum, pattern, format, min/max, additionalProperties), and
  every string and array is bounded, by a pattern where there is one (xgrammar ignores maxLength next to a
  pattern) or by maxLength/maxItems otherwise.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from functools import cache, lru_cache
from importlib import resources
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, StringConstraints, create_model

from extractor.errors import BayouError

SCHEMA_PACKAGE = "schemas"
VERSION_KEY = "x-bayou-version"
CHECKS_KEY = "x-bayou-checks"

# The value conventions the schema files spell as patterns; normalisation recognises a field's kind by them.
MONEY_PATTERN = r"^-?[0-9]{1,10}\.[0-9]{2}$"
TIME_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
STATE_PATTERN = r"^[A-Z]{2}$"


class UnknownDocumentType(BayouError):
    code = "unknown_doc_type"


class SchemaError(BayouError):
    """A schema file that cannot be used (unreadable, or using a construct the model generator does not know)."""

    code = "bad_schema"


def available_types() -> list[str]:
    """Every document type with a schema file, sorted."""
    return list(_available_types())


@lru_cache(maxsize=1)
def _available_types() -> tuple[str, ...]:
    root = resources.files(SCHEMA_PACKAGE)
    return tuple(
        sorted(entry.name[: -len(".json")] for entry in root.iterdir() if entry.name.endswith(".json"))
    )


def load_schema(doc_type: str) -> dict[str, Any]:
    """The JSON Schema of `doc_type`. A copy: callers may mutate it without corrupting the cache."""
    return copy.deepcopy(_cached_schema(doc_type))


def schema_version(doc_type: str) -> str:
    return str(_cached_schema(doc_type)[VERSION_KEY])


def schema_checks(doc_type: str) -> list[str]:
    """Names of the cross-field checks (extractor/checks.py) that apply to `doc_type`."""
    return list(_cached_schema(doc_type).get(CHECKS_KEY, []))


@cache
def _cached_schema(doc_type: str) -> dict[str, Any]:
    # Only names listed from the package directory are opened, so a doc_type can never address another file.
    if doc_type not in _available_types():
        known = ", ".join(_available_types())
        raise UnknownDocumentType(f"unknown document type {doc_type!r} (known: {known})")
    text = resources.files(SCHEMA_PACKAGE).joinpath(f"{doc_type}.json").read_text(encoding="utf-8")
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SchemaError(f"schemas/{doc_type}.json is not valid JSON: {exc}") from exc
    if VERSION_KEY not in schema:
        raise SchemaError(f"schemas/{doc_type}.json has no {VERSION_KEY!r}")
    return schema


@cache
def model_for(doc_type: str) -> type[BaseModel]:
    """A Pydantic model generated from the schema of `doc_type` (extra keys forbidden, every key required)."""
    schema = _cached_schema(doc_type)
    return _object_model(_model_name(doc_type), schema)


def _model_name(doc_type: str) -> str:
    return "".join(part.capitalize() for part in doc_type.split("_"))


def _object_model(name: str, schema: dict[str, Any]) -> type[BaseModel]:
    required = set(schema.get("required", []))
    fields: dict[str, Any] = {}
    for key, sub in schema.get("properties", {}).items():
        annotation = _annotation(f"{name}{_model_name(key)}", sub)
        default = ... if key in required else None
        fields[key] = (annotation, Field(default, description=sub.get("description")))
    forbid = schema.get("additionalProperties") is False
    config = ConfigDict(extra="forbid" if forbid else "ignore")
    return create_model(name, __config__=config, __doc__=schema.get("description"), **fields)


def _annotation(name: str, schema: dict[str, Any]) -> Any:
    types = schema.get("type")
    type_list = types if isinstance(types, list) else [types]
    if "enum" in schema:
        return _enum_annotation(schema["enum"])
    members = [_single_type(name, t, schema) for t in type_list]
    return members[0] if len(members) == 1 else Union[tuple(members)]  # noqa: UP007 - built at run time


def _enum_annotation(values: list[Any]) -> Any:
    literals = tuple(v for v in values if v is not None)
    annotation: Any = Literal[literals]
    return annotation | None if None in values else annotation


def _single_type(name: str, json_type: str | None, schema: dict[str, Any]) -> Any:
    if json_type == "null":
        return type(None)
    if json_type == "string":
        return _string_annotation(schema)
    if json_type == "integer":
        return Annotated[int, Strict(), Field(ge=schema.get("minimum"), le=schema.get("maximum"))]
    if json_type == "number":
        return Annotated[float, Strict(), Field(ge=schema.get("minimum"), le=schema.get("maximum"))]
    if json_type == "boolean":
        return Annotated[bool, Strict()]
    if json_type == "array":
        item = _annotation(f"{name}Item", schema.get("items", {}))
        return Annotated[
            list[item], Field(min_length=schema.get("minItems"), max_length=schema.get("maxItems"))
        ]
    if json_type == "object":
        return _object_model(name, schema)
    raise SchemaError(f"no model mapping for JSON type {json_type!r} ({name})")


def _string_annotation(schema: dict[str, Any]) -> Any:
    constraints = StringConstraints(
        pattern=schema.get("pattern"), min_length=schema.get("minLength"), max_length=schema.get("maxLength")
    )
    if schema.get("format") == "date":
        return Annotated[str, Strict(), constraints, AfterValidator(_iso_date)]
    return Annotated[str, Strict(), constraints]


def _iso_date(value: str) -> str:
    # The same rule as jsonschema's "date" format: an RFC 3339 full-date, a real calendar day.
    if len(value) != 10:
        raise ValueError("expected a date as YYYY-MM-DD")
    dt.date.fromisoformat(value)
    return value
