from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from extractor.prompts import PROMPT_VERSION, Prompt, build_prompt, type_phrase
from extractor.schemas import MONEY_PATTERN, UnknownDocumentType, load_schema, schema_version

TYPES = ["receipt", "drivers_license", "check"]


def fields(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, sub in schema.get("properties", {}).items():
        yield name, sub
        nested = sub.get("items") if "items" in sub else sub
        yield from fields(nested if isinstance(nested, dict) else {})


@pytest.mark.parametrize("doc_type", TYPES)
def test_prompt_is_versioned_with_its_schema(doc_type: str) -> None:
    prompt = build_prompt(doc_type)
    assert isinstance(prompt, Prompt)
    assert prompt.schema_version == schema_version(doc_type)
    assert prompt.version == f"{doc_type}/{schema_version(doc_type)}+{PROMPT_VERSION}"
    with pytest.raises(dataclasses.FrozenInstanceError):
        prompt.text = "changed"  # type: ignore[misc]


@pytest.mark.parametrize("doc_type", TYPES)
def test_every_field_appears_with_its_description(doc_type: str) -> None:
    text = build_prompt(doc_type).text
    for name, sub in fields(load_schema(doc_type)):
        assert f"- {name} (" in text, name
        assert sub["description"] in text, name


@pytest.mark.parametrize("doc_type", TYPES)
def test_fields_are_listed_in_schema_order(doc_type: str) -> None:
    text = build_prompt(doc_type).text
    positions = [text.index(f"- {name} (") for name in load_schema(doc_type)["properties"]]
    assert positions == sorted(positions)


def test_receipt_prompt_states_the_value_conventions() -> None:
    text = build_prompt("receipt").text
    assert "YYYY-MM-DD" in text and "HH:MM" in text
    assert "no currency sign" in text
    assert "null" in text
    assert text.rstrip().endswith("Answer with the JSON object only, no other text.")
    assert '- payment_method (one of "cash", "credit_card"' in text
    assert "- items (list of objects with these keys, [] when none)" in text
    assert "  - total_price (money" in text  # nested fields are indented under their array


def test_rules_for_absent_kinds_are_left_out() -> None:
    licence = build_prompt("drivers_license").text
    assert "no currency sign" not in licence and "HH:MM" not in licence
    assert "YYYY-MM-DD" in licence


@pytest.mark.parametrize(
    ("schema", "phrase"),
    [
        ({"type": ["string", "null"], "format": "date"}, "date YYYY-MM-DD or null"),
        ({"type": "string", "pattern": MONEY_PATTERN}, 'money "0.00"'),
        ({"type": "string", "enum": ["USA"]}, 'always "USA"'),
        ({"type": ["string", "null"], "enum": ["M", "F", None]}, 'one of "M", "F" or null'),
        ({"type": "array", "items": {"type": "string"}}, "list of string values, [] when none"),
        ({"type": ["integer", "null"]}, "whole number or null"),
        ({"type": "boolean"}, "true or false"),
        ({"type": "string", "pattern": "^[0-9]{9}$"}, "digits"),
    ],
)
def test_type_phrases(schema: dict[str, Any], phrase: str) -> None:
    assert type_phrase(schema) == phrase


def test_unknown_type_raises_the_typed_error() -> None:
    with pytest.raises(UnknownDocumentType):
        build_prompt("passport")
