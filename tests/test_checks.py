from __future__ import annotations

import copy
import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from extractor.checks import (
    USPS_CODES,
    CheckContext,
    UnknownCheck,
    amount_from_words,
    check,
    passed,
    registered_checks,
    run_check,
    run_checks,
)
from extractor.schemas import load_schema, schema_checks

TODAY = CheckContext(today=dt.date(2024, 6, 1))


def example(doc_type: str, **changes: Any) -> dict[str, Any]:
    document = copy.deepcopy(load_schema(doc_type)["examples"][0])
    document.update(changes)
    return document


def result(name: str, document: dict[str, Any]) -> Any:
    return run_check(name, document, TODAY)


@pytest.mark.parametrize("doc_type", ["receipt", "drivers_license", "check"])
def test_every_check_passes_on_the_schema_example(doc_type: str) -> None:
    results = run_checks(schema_checks(doc_type), example(doc_type), TODAY)
    assert [r.name for r in results] == schema_checks(doc_type)
    assert all(r.ok and r.applicable for r in results), results


BAD_CASES = {
    "receipt_items_sum": example("receipt", subtotal="13.75", total="16.77"),
    "receipt_total_sum": example("receipt", total="15.87"),
    "check_amount_words": example("check", amount_words="One thousand two hundred fifteen and 45/100"),
    "check_routing_number": example("check", routing_number="021000022"),
    "check_date_plausible": example("check", date="2024-12-01"),
    "license_date_order": example("drivers_license", issue_date="2030-01-01"),
    "license_age_at_issue": example("drivers_license", date_of_birth="2010-01-01"),
    "license_state_codes": example("drivers_license", issuing_state="XX"),
}


@pytest.mark.parametrize("name", sorted(BAD_CASES))
def test_each_check_fires_on_a_crafted_bad_case(name: str) -> None:
    outcome = result(name, BAD_CASES[name])
    assert outcome.applicable and not outcome.ok, outcome
    assert outcome.message


def test_every_registered_check_has_a_bad_case() -> None:
    assert set(BAD_CASES) == set(registered_checks())


def test_money_sums_allow_one_cent() -> None:
    assert result("receipt_total_sum", example("receipt", total="15.78")).ok
    assert not result("receipt_total_sum", example("receipt", total="15.79")).ok
    assert result("receipt_items_sum", example("receipt", subtotal="12.74")).ok


def test_missing_tax_and_tip_count_as_zero() -> None:
    assert result("receipt_total_sum", example("receipt", tax=None, tip=None, total="12.75")).ok


@pytest.mark.parametrize(
    ("name", "document"),
    [
        ("receipt_items_sum", example("receipt", subtotal=None)),
        ("receipt_items_sum", example("receipt", items=[])),
        ("receipt_total_sum", example("receipt", subtotal=None)),
        ("check_amount_words", example("check", amount_words=None)),
        ("check_routing_number", example("check", routing_number=None)),
        ("check_date_plausible", example("check", date=None)),
        ("license_date_order", example("drivers_license", issue_date=None, expiration_date=None)),
        ("license_age_at_issue", example("drivers_license", date_of_birth=None)),
        ("license_state_codes", example("drivers_license", issuing_state=None, address=None)),
    ],
)
def test_a_check_with_null_inputs_is_skipped_as_ok(name: str, document: dict[str, Any]) -> None:
    outcome = result(name, document)
    assert outcome.ok and not outcome.applicable
    assert outcome.message.startswith("not applicable")


def test_date_order_compares_the_dates_that_are_present() -> None:
    assert not result(
        "license_date_order", example("drivers_license", issue_date=None, expiration_date="1980-01-01")
    ).ok
    assert result("license_date_order", example("drivers_license", issue_date=None)).ok


def test_check_date_limits() -> None:
    assert result("check_date_plausible", example("check", date="2024-11-28")).ok  # 180 days ahead
    assert not result("check_date_plausible", example("check", date="2024-11-29")).ok
    assert not result("check_date_plausible", example("check", date="1949-12-31")).ok


def test_age_limits_are_inclusive() -> None:
    assert result(
        "license_age_at_issue", example("drivers_license", date_of_birth="2007-08-02")
    ).ok  # 14 today
    assert not result("license_age_at_issue", example("drivers_license", date_of_birth="2007-08-03")).ok
    assert not result("license_age_at_issue", example("drivers_license", date_of_birth="1900-01-01")).ok


def test_state_codes_cover_states_dc_and_territories() -> None:
    assert len(USPS_CODES) == 50 + 1 + 5
    bad_address = example("drivers_license")
    bad_address["address"]["state"] = "ZZ"
    assert not result("license_state_codes", bad_address).ok
    assert result("license_state_codes", example("drivers_license", issuing_state="PR")).ok


def test_malformed_inputs_do_not_raise() -> None:
    garbage = {
        "subtotal": "abc",
        "items": ["x"],
        "total": [],
        "date": 5,
        "amount_numeric": {},
        "address": "x",
    }
    for name in registered_checks():
        assert run_check(name, garbage, TODAY).ok
    assert run_check("receipt_total_sum", ["not", "an", "object"]).ok  # type: ignore[arg-type]


def test_registry_rejects_unknown_and_duplicate_names() -> None:
    with pytest.raises(UnknownCheck):
        run_check("no_such_check", {})
    with pytest.raises(ValueError, match="twice"):
        check("receipt_total_sum")(lambda data, context: passed("x"))


# ---- amounts in words -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("words", "amount"),
    [
        ("One hundred twenty-three and 45/100", "123.45"),
        ("One Thousand Two Hundred Dollars and 00 cents", "1200.00"),
        ("Five hundred and xx/100 DOLLARS", "500.00"),
        ("****Twelve thousand three hundred forty-five and 67/100****", "12345.67"),
        ("One hundred and twenty-three dollars and forty-five cents", "123.45"),
        ("Ninety-nine dollars only", "99.00"),
        ("Twelve hundred and no/100", "1200.00"),
        ("Seventy-five cents", "0.75"),
        ("Two million fifty thousand six and 01/100", "2050006.01"),
        ("ONE THOUSAND AND 00/100 US DOLLARS", "1000.00"),
        ("One thousand, two hundred and 5/100 dollars.", "1200.05"),
        ("1,200 and 00/100", "1200.00"),
    ],
)
def test_amount_from_words(words: str, amount: str) -> None:
    assert amount_from_words(words) == Decimal(amount)


@pytest.mark.parametrize(
    "words", ["", "Pay to the order of", "one hundred banana", "twelve and 120 cents", "12.50"]
)
def test_amount_from_words_rejects_non_amounts(words: str) -> None:
    assert amount_from_words(words) is None


_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen \
seventeen eighteen nineteen".split()
)
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def _spell(number: int) -> str:
    """An independent number speller for the round trip (hyphenated tens, no 'and')."""
    if number < 20:
        return _ONES[number]
    if number < 100:
        return _TENS[number // 10] + (f"-{_ONES[number % 10]}" if number % 10 else "")
    if number < 1000:
        rest = number % 100
        return f"{_ONES[number // 100]} hundred" + (f" {_spell(rest)}" if rest else "")
    for scale, name in ((1_000_000, "million"), (1_000, "thousand")):
        if number >= scale:
            rest = number % scale
            return f"{_spell(number // scale)} {name}" + (f" {_spell(rest)}" if rest else "")
    raise AssertionError(number)


@given(st.integers(0, 999_999_999), st.integers(0, 99), st.sampled_from(["{}/100", "{} cents"]))
def test_spelled_amounts_round_trip(dollars: int, cents: int, cents_form: str) -> None:
    cents_text = cents_form.format(f"{cents:02d}")
    words = f"{_spell(dollars).capitalize()} dollars and {cents_text}"
    assert amount_from_words(words) == Decimal(dollars) + Decimal(cents) / 100
