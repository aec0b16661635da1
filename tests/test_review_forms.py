"""Schema -> form fields -> submitted form -> typed JSON (api.review.forms)."""

from __future__ import annotations

from typing import Any

import pytest

from api.review.forms import ROW_PLACEHOLDER, build_form, changed_pointers, field_name, parse_form
from extractor.schemas import load_schema


def submitted(fields) -> dict[str, str]:
    """What a browser would post for these fields, unchanged."""
    form: dict[str, str] = {}
    for f in fields:
        if f.kind == "group":
            form.update(submitted(f.children))
        elif f.kind == "rows":
            for row in f.rows:
                form.update(submitted(row))
        elif f.kind == "checkbox":
            if f.checked:
                form[f.pointer] = "on"
        else:
            form[f.pointer] = f.value
    return form


@pytest.mark.parametrize("doc_type", ["receipt", "drivers_license", "check"])
def test_an_unchanged_form_gives_back_the_same_document(doc_type: str) -> None:
    schema = load_schema(doc_type)
    example = schema["examples"][0]
    data, errors = parse_form(schema, submitted(build_form(schema, example)))
    assert errors == {}
    assert data == example
    assert changed_pointers(example, data) == []


def test_kinds_follow_the_schema(receipt_example: dict[str, Any]) -> None:
    fields = {f.pointer: f for f in build_form(load_schema("receipt"), receipt_example)}
    assert fields["/transaction_date"].kind == "date"
    assert fields["/transaction_time"].kind == "time"
    assert fields["/payment_method"].kind == "select"
    assert "credit_card" in fields["/payment_method"].options
    items = fields["/items"]
    assert items.kind == "rows"
    assert [c.pointer for c in items.columns][0] == f"/items/{ROW_PLACEHOLDER}/description"
    assert items.rows[1][2].pointer == "/items/1/unit_price"
    assert items.rows[0][1].kind == "number"
    licence = {f.pointer: f for f in build_form(load_schema("drivers_license"), None)}
    assert licence["/weight_lb"].kind == "integer"
    assert [c.pointer for c in licence["/address"].children][1] == "/address/city"
    assert licence["/endorsements"].kind == "list"
    assert {f.pointer: f for f in build_form(load_schema("check"), None)}[
        "/signature_present"
    ].kind == "checkbox"


def test_a_date_the_date_input_cannot_show_stays_text() -> None:
    fields = {f.pointer: f for f in build_form(load_schema("receipt"), {"transaction_date": "13/45/2024"})}
    assert fields["/transaction_date"].kind == "text"
    assert fields["/transaction_date"].value == "13/45/2024"


def test_messages_are_attached_by_pointer(receipt_example: dict[str, Any]) -> None:
    messages = {"/total": ["low confidence (0.20)"], "/items/1/total_price": ["does not match"]}
    fields = {f.pointer: f for f in build_form(load_schema("receipt"), receipt_example, messages)}
    assert fields["/total"].messages == ["low confidence (0.20)"]
    assert fields["/items"].rows[1][3].messages == ["does not match"]
    assert not fields["/items"].rows[0][3].messages
    assert not fields["/subtotal"].flagged


def test_types_nulls_numbers_lists_and_rows_with_gaps() -> None:
    form = {
        "/merchant_name": " Corner Shop ",
        "/merchant_address": "",
        "/transaction_date": "2024-05-01",
        "/items/0/description": "Tea",
        "/items/0/quantity": "2",
        "/items/0/unit_price": "1.50",
        "/items/0/total_price": "3.00",
        # row 1 was removed in the browser, row 5 added
        "/items/5/description": "Cake",
        "/items/5/quantity": "0.5",
        "/items/5/unit_price": "",
        "/items/5/total_price": "2.00",
        "/payment_method": "cash",
        "/total": "5.00",
    }
    data, errors = parse_form(load_schema("receipt"), form)
    assert errors == {}
    assert data["merchant_name"] == "Corner Shop"
    assert data["merchant_address"] is None
    assert data["tip"] is None
    assert data["items"] == [
        {"description": "Tea", "quantity": 2, "unit_price": "1.50", "total_price": "3.00"},
        {"description": "Cake", "quantity": 0.5, "unit_price": None, "total_price": "2.00"},
    ]
    assert isinstance(data["items"][0]["quantity"], int)
    licence, _ = parse_form(
        load_schema("drivers_license"), {"/weight_lb": "170", "/endorsements": "M, H ,", "/sex": ""}
    )
    assert licence["weight_lb"] == 170
    assert licence["endorsements"] == ["M", "H"]
    assert licence["sex"] is None
    check, _ = parse_form(load_schema("check"), {"/signature_present": "on"})
    assert check["signature_present"] is True
    assert parse_form(load_schema("check"), {})[0]["signature_present"] is False


def test_unreadable_numbers_are_reported_at_their_row_position() -> None:
    form = {
        "/items/3/description": "A",
        "/items/3/quantity": "x",
        "/items/7/description": "B",
        "/items/7/quantity": "1e999",
    }
    data, errors = parse_form(load_schema("receipt"), form)
    assert set(errors) == {"/items/0/quantity", "/items/1/quantity"}
    licence, errors = parse_form(load_schema("drivers_license"), {"/weight_lb": "170.5"})
    assert errors == {"/weight_lb": ["a whole number is expected"]}


def test_changed_pointers_and_field_names() -> None:
    before = {"total": "1.00", "items": [{"a": 1}, {"a": 2}], "address": {"city": "X"}}
    after = {"total": "1.10", "items": [{"a": 1}, {"a": 3}, {"a": 4}], "address": {"city": "X"}}
    assert changed_pointers(before, after) == ["/total", "/items/1/a", "/items/2"]
    assert changed_pointers(None, {"a": 1}) == ["/"]
    assert changed_pointers({"q": 1}, {"q": True}) == ["/q"]
    assert field_name("/items/12/total_price") == "items[].total_price"
    assert field_name("/address/city") == "address.city"
