from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from extractor.checks import registered_checks
from extractor.schemas import (
    MONEY_PATTERN,
    UnknownDocumentType,
    available_types,
    load_schema,
    model_for,
    schema_checks,
    schema_version,
)
from extractor.validation import schema_errors

REPO = Path(__file__).resolve().parents[1]
TYPES = ["check", "drivers_license", "receipt"]
# keywords a JSON-Schema grammar engine (xgrammar) cannot compile into a decoding grammar
EXOTIC = {
    "if",
    "then",
    "else",
    "dependentSchemas",
    "dependentRequired",
    "$dynamicRef",
    "not",
    "unevaluatedProperties",
}


def example(doc_type: str) -> dict[str, Any]:
    return copy.deepcopy(load_schema(doc_type)["examples"][0])


def subschemas(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for key, sub in schema.get("properties", {}).items():
        yield from subschemas(sub, f"{path}/{key}")
    if isinstance(schema.get("items"), dict):
        yield from subschemas(schema["items"], f"{path}/items")


def test_every_schema_file_is_a_document_type() -> None:
    files = sorted(p.stem for p in (REPO / "schemas").glob("*.json"))
    assert available_types() == files
    assert set(TYPES) <= set(files)


@pytest.mark.parametrize("doc_type", TYPES)
def test_schema_is_valid_draft_2020_12_with_identity(doc_type: str) -> None:
    schema = load_schema(doc_type)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith(doc_type)
    assert schema["title"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", schema_version(doc_type))


@pytest.mark.parametrize("doc_type", TYPES)
def test_every_field_is_described_bounded_and_required(doc_type: str) -> None:
    for path, sub in subschemas(load_schema(doc_type)):
        assert sub.get("description"), f"{doc_type}{path} has no description"
        assert not EXOTIC & set(sub), f"{doc_type}{path} uses {EXOTIC & set(sub)}"
        types = sub["type"] if isinstance(sub["type"], list) else [sub["type"]]
        if "object" in types:
            assert sub["additionalProperties"] is False
            assert sub["required"] == list(sub["properties"])
        if "array" in types:
            assert sub.get("maxItems"), f"{doc_type}{path}: unbounded array"
        if "string" in types:
            bounded = {"maxLength", "pattern", "enum", "format"} & set(sub)
            assert bounded, f"{doc_type}{path}: unbounded string"


@pytest.mark.parametrize("doc_type", TYPES)
def test_listed_checks_exist(doc_type: str) -> None:
    assert schema_checks(doc_type)
    assert set(schema_checks(doc_type)) <= set(registered_checks())


def _documented_fields() -> dict[str, list[str]]:
    """Field names per type from docs/schema-fields.md, the contract shared with the sample generator."""
    sections = re.split(r"^## ", (REPO / "docs" / "schema-fields.md").read_text(), flags=re.M)[1:]
    fields = {}
    for section in sections:
        doc_type = section.split()[0]
        fields[doc_type] = re.findall(r"^\| (\w+) \|", section, flags=re.M)
    return fields


@pytest.mark.parametrize("doc_type", TYPES)
def test_field_names_match_the_documented_contract(doc_type: str) -> None:
    documented = [name for name in _documented_fields()[doc_type] if name != "field"]
    assert list(load_schema(doc_type)["properties"]) == documented


def test_money_fields_use_the_shared_pattern() -> None:
    receipt = load_schema("receipt")["properties"]
    for name in ("subtotal", "tax", "tip", "total"):
        assert receipt[name]["pattern"] == MONEY_PATTERN
    assert receipt["items"]["items"]["properties"]["total_price"]["pattern"] == MONEY_PATTERN
    assert load_schema("check")["properties"]["amount_numeric"]["pattern"] == MONEY_PATTERN


@pytest.mark.parametrize("doc_type", TYPES)
def test_the_example_validates(doc_type: str) -> None:
    assert schema_errors(doc_type, example(doc_type)) == []
    model_for(doc_type).model_validate(example(doc_type))


BROKEN = {
    "receipt": [
        ("/total", lambda d: d.update(total="$15.77")),
        ("/items/1/total_price", lambda d: d["items"][1].update(total_price=3.25)),
        ("/transaction_date", lambda d: d.update(transaction_date="2024-02-30")),
        ("/payment_method", lambda d: d.update(payment_method="cheque")),
        ("/merchant_name", lambda d: d.pop("merchant_name")),
        ("/loyalty_id", lambda d: d.update(loyalty_id="X1")),
    ],
    "drivers_license": [
        ("/address/state", lambda d: d["address"].update(state="California")),
        ("/endorsements", lambda d: d.update(endorsements=None)),
        ("/weight_lb", lambda d: d.update(weight_lb="135")),
        ("/date_of_birth", lambda d: d.update(date_of_birth="07/14/1990")),
    ],
    "check": [
        ("/routing_number", lambda d: d.update(routing_number="02100002")),
        ("/signature_present", lambda d: d.update(signature_present="yes")),
        ("/currency", lambda d: d.update(currency="EUR")),
    ],
}


@pytest.mark.parametrize(
    ("doc_type", "pointer", "breakage"), [(t, p, b) for t, cases in BROKEN.items() for p, b in cases]
)
def test_a_broken_document_yields_errors_at_json_pointers(doc_type: str, pointer: str, breakage: Any) -> None:
    broken = example(doc_type)
    breakage(broken)
    assert [issue.path for issue in schema_errors(doc_type, broken)] == [pointer]
    with pytest.raises(ValidationError):
        model_for(doc_type).model_validate(broken)


@pytest.mark.parametrize("doc_type", TYPES)
def test_model_fields_mirror_the_schema(doc_type: str) -> None:
    schema, model = load_schema(doc_type), model_for(doc_type)
    assert list(model.model_fields) == list(schema["properties"])
    assert all(field.is_required() for field in model.model_fields.values())
    descriptions = {name: field.description for name, field in model.model_fields.items()}
    assert descriptions == {name: sub["description"] for name, sub in schema["properties"].items()}


def test_unknown_type_is_a_typed_error() -> None:
    for name in ("passport", "../pyproject", ""):
        with pytest.raises(UnknownDocumentType) as caught:
            load_schema(name)
        assert caught.value.code == "unknown_doc_type"


def test_load_schema_returns_a_private_copy() -> None:
    load_schema("receipt")["properties"].clear()
    assert load_schema("receipt")["properties"]


@pytest.mark.parametrize("doc_type", TYPES)
def test_schema_compiles_to_a_decoding_grammar(doc_type: str) -> None:
    xgrammar = pytest.importorskip("xgrammar")
    grammar = xgrammar.Grammar.from_json_schema(json.dumps(load_schema(doc_type)))
    assert "root ::=" in str(grammar)
