from __future__ import annotations

import copy
import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from extractor.checks import CheckContext
from extractor.schemas import load_schema
from extractor.validation import normalise_date, normalise_money, normalise_state, normalise_time, validate

TODAY = CheckContext(today=dt.date(2024, 6, 1))


def example(doc_type: str, **changes: Any) -> dict[str, Any]:
    document = copy.deepcopy(load_schema(doc_type)["examples"][0])
    document.update(changes)
    return document


@pytest.mark.parametrize("doc_type", ["receipt", "drivers_license", "check"])
def test_the_examples_are_valid_and_unchanged(doc_type: str) -> None:
    result = validate(doc_type, example(doc_type), context=TODAY)
    assert result.ok and result.schema_ok and result.checks_ok
    assert result.data == example(doc_type)
    assert result.changes == []


@pytest.mark.parametrize(
    ("printed", "iso"),
    [
        ("2024-03-09", "2024-03-09"),
        ("03/09/2024", "2024-03-09"),
        ("3/9/24", "2024-03-09"),
        ("2024/3/9", "2024-03-09"),
        ("Mar 9, 2024", "2024-03-09"),
        ("9 March 2024", "2024-03-09"),
        ("09-MAR-24", "2024-03-09"),
        ("Sat, March 9th 2024", "2024-03-09"),
        ("20240309", "2024-03-09"),
        ("03092024", "2024-03-09"),
    ],
)
def test_dates_are_normalised_to_iso(printed: str, iso: str) -> None:
    result = validate("receipt", example("receipt", transaction_date=printed), context=TODAY)
    assert result.data["transaction_date"] == iso
    assert result.schema_ok


def test_ambiguous_dates_follow_the_document() -> None:
    # a US receipt reads 03/09 month-first; a Malaysian (MYR) one day-first; a part above 12 decides alone
    assert validate("receipt", example("receipt", transaction_date="03/09/2024")).data[
        "transaction_date"
    ] == ("2024-03-09")
    myr = example("receipt", transaction_date="03/09/2024", currency="MYR")
    assert validate("receipt", myr).data["transaction_date"] == "2024-09-03"
    assert normalise_date("25/12/2018") == "2018-12-25"
    assert normalise_date("12/25/2018", day_first=True) == "2018-12-25"


@pytest.mark.parametrize("text", ["2024-02-30", "13/13/2024", "yesterday", "2024"])
def test_unreadable_dates_are_left_for_the_schema_to_report(text: str) -> None:
    assert normalise_date(text) is None
    result = validate("receipt", example("receipt", transaction_date=text))
    assert result.data["transaction_date"] == text
    assert [issue.path for issue in result.errors] == ["/transaction_date"]


@pytest.mark.parametrize(
    ("amount", "normalised"),
    [
        ("$1,234.5", "1234.50"),
        ("RM 9.00", "9.00"),
        ("USD 15.77", "15.77"),
        ("(12.00)", "-12.00"),
        ("12.00-", "-12.00"),
        ("1.234,56", "1234.56"),
        ("12,5", "12.50"),
        (7, "7.00"),
        (15.77, "15.77"),
        ("2.345", "2.35"),
    ],
)
def test_money_is_normalised(amount: Any, normalised: str) -> None:
    assert normalise_money(amount) == normalised


def test_money_in_a_document_is_normalised_and_the_checks_see_it() -> None:
    document = example("receipt", total="$15.77", subtotal=12.75, tax="1.02 ")
    document["items"][0]["total_price"] = "$9.50"
    result = validate("receipt", document, context=TODAY)
    assert (result.data["total"], result.data["subtotal"], result.data["tax"]) == ("15.77", "12.75", "1.02")
    assert result.data["items"][0]["total_price"] == "9.50"
    assert result.ok
    assert {change.path for change in result.changes} == {
        "/total",
        "/subtotal",
        "/tax",
        "/items/0/total_price",
    }


def test_text_is_collapsed_and_blank_nullable_values_become_null() -> None:
    result = validate(
        "receipt", example("receipt", merchant_name="  Blue   Fern\nCafe ", tip="", receipt_number="N/A")
    )
    assert result.data["merchant_name"] == "Blue Fern Cafe"
    assert result.data["tip"] is None and result.data["receipt_number"] is None


def test_enum_members_are_matched_regardless_of_case_and_spacing() -> None:
    result = validate("receipt", example("receipt", payment_method="Credit Card"))
    assert result.data["payment_method"] == "credit_card"
    assert validate("drivers_license", example("drivers_license", sex="f")).data["sex"] == "F"


def test_licence_fields_are_normalised() -> None:
    document = example(
        "drivers_license", date_of_birth="07/14/1990", weight_lb="135 lb", issuing_state="california"
    )
    document["address"]["state"] = "New York"
    result = validate("drivers_license", document, context=TODAY)
    assert result.data["date_of_birth"] == "1990-07-14"
    assert result.data["weight_lb"] == 135
    assert result.data["issuing_state"] == "CA"
    assert result.data["address"]["state"] == "NY"
    assert result.ok


def test_check_numbers_lose_their_grouping() -> None:
    result = validate("check", example("check", routing_number="0210 0002 1", signature_present="yes"))
    assert result.data["routing_number"] == "021000021"
    assert result.data["signature_present"] is True


def test_states_are_mapped_only_when_unambiguous() -> None:
    assert normalise_state("ny") == "NY"
    assert normalise_state("Washington, D.C.") == "DC"
    assert normalise_state("Puerto Rico") == "PR"
    assert normalise_state("Narnia") is None
    result = validate("drivers_license", example("drivers_license", issuing_state="Narnia"), context=TODAY)
    assert [issue.path for issue in result.errors] == ["/issuing_state"]


@pytest.mark.parametrize(
    ("text", "hhmm"), [("2:30 PM", "14:30"), ("14:30:59", "14:30"), ("12:05 am", "00:05")]
)
def test_times_are_normalised(text: str, hhmm: str) -> None:
    assert normalise_time(text) == hhmm
    assert validate("receipt", example("receipt", transaction_time=text)).data["transaction_time"] == hhmm


def test_schema_errors_carry_json_pointers_and_checks_still_run() -> None:
    document = example("receipt", total="lots", unexpected=1)
    document["items"][1].pop("description")
    result = validate("receipt", document, context=TODAY)
    assert [issue.path for issue in result.errors] == ["/items/1/description", "/total", "/unexpected"]
    assert not result.ok
    assert {check.name for check in result.checks} == {"receipt_items_sum", "receipt_total_sum"}


def test_a_failed_check_makes_a_schema_valid_document_not_ok() -> None:
    result = validate("check", example("check", routing_number="123456789"), context=TODAY)
    assert result.schema_ok and not result.checks_ok and not result.ok
    assert result.as_dict()["checks"][1] == {
        "name": "check_routing_number",
        "ok": False,
        "message": "'123456789' fails the ABA checksum",
        "applicable": True,
    }


def test_validation_does_not_mutate_its_input() -> None:
    document = example("receipt", total="$15.77")
    validate("receipt", document)
    assert document["total"] == "$15.77"


def test_a_non_object_is_one_error_at_the_root() -> None:
    result = validate("receipt", ["not", "an", "object"])
    assert [issue.path for issue in result.errors] == [""]
    assert result.checks == []


def test_normalisation_can_be_switched_off() -> None:
    result = validate("receipt", example("receipt", total="$15.77"), normalise=False)
    assert [issue.path for issue in result.errors] == ["/total"]


@given(st.decimals(min_value=-(10**9), max_value=10**9, places=2, allow_nan=False, allow_infinity=False))
def test_printed_amounts_read_back_exactly(amount: Decimal) -> None:
    printed = f"${abs(amount):,.2f}"
    printed = f"({printed})" if amount < 0 else printed
    assert normalise_money(printed) == f"{amount:.2f}".replace("-0.00", "0.00")


@given(st.dates(min_value=dt.date(1950, 1, 1), max_value=dt.date(2040, 12, 31)))
def test_us_and_named_month_dates_read_back_exactly(day: dt.date) -> None:
    assert normalise_date(day.strftime("%m/%d/%Y")) == day.isoformat()
    assert normalise_date(day.strftime("%d/%m/%Y"), day_first=True) == day.isoformat()
    assert normalise_date(day.strftime("%B %d, %Y")) == day.isoformat()
    assert normalise_date(day.strftime("%d-%b-%Y")) == day.isoformat()
