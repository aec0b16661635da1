from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from extractor.parsing import parse_json_output, repair_json

EXPECTED = {"merchant_name": "Joe's Diner", "total": "12.50", "tip": None, "paid": True}


@pytest.mark.parametrize(
    "text",
    [
        '{"merchant_name": "Joe\'s Diner", "total": "12.50", "tip": null, "paid": true}',
        '```json\n{"merchant_name": "Joe\'s Diner", "total": "12.50", "tip": null, "paid": true}\n```',
        'Here is the JSON you asked for:\n{"merchant_name": "Joe\'s Diner", "total": "12.50", "tip": null, '
        '"paid": true}\nLet me know if you need anything else.',
        "{'merchant_name': 'Joe\\'s Diner', 'total': '12.50', 'tip': None, 'paid': True}",
        '{"merchant_name": "Joe\'s Diner", "total": "12.50", "tip": None, "paid": True,}',
        "```\n{'merchant_name': \"Joe's Diner\", 'total': '12.50', 'tip': None, 'paid': True}",  # unclosed fence
        '{merchant_name: "Joe\'s Diner", total: "12.50", tip: null, paid: true}',
        '{"merchant_name": "Joe\'s Diner", // the shop\n "total": "12.50", "tip": null, "paid": true}',
    ],
    ids=[
        "plain",
        "fenced",
        "prose",
        "single-quotes",
        "python-literals",
        "open-fence",
        "bare-keys",
        "comment",
    ],
)
def test_recovers_the_object(text: str) -> None:
    outcome = parse_json_output(text)
    assert outcome.ok, outcome.error
    assert outcome.data == EXPECTED
    assert outcome.error is None


def test_valid_json_is_not_marked_repaired() -> None:
    assert not parse_json_output('{"a": 1}').repaired
    assert parse_json_output("{'a': 1}").repaired


def test_braces_and_quotes_inside_strings_are_respected() -> None:
    outcome = parse_json_output(
        'Result: {"memo": "use {braces} and \\"quotes\\"", "n": [1, {"x": "]"}]} done'
    )
    assert outcome.data == {"memo": 'use {braces} and "quotes"', "n": [1, {"x": "]"}]}


def test_the_first_object_that_parses_wins() -> None:
    outcome = parse_json_output('The {field} names are below.\n{"a": 1}\n{"b": 2}')
    assert outcome.data == {"a": 1}


def test_python_words_inside_strings_are_kept() -> None:
    assert parse_json_output("{'note': 'None of True, False'}").data == {"note": "None of True, False"}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("I could not read this receipt.", "no JSON object"),
        ("", "empty"),
        ("   \n", "empty"),
        ("[1, 2, 3]", "no JSON object"),
        ('{"total": "12.50", "items": [', "invalid JSON"),
        ("{this is not json at all}", "invalid JSON"),
    ],
)
def test_failure_is_an_outcome_not_an_exception(text: str, reason: str) -> None:
    outcome = parse_json_output(text)
    assert not outcome.ok
    assert outcome.data is None
    assert reason in (outcome.error or "")


def test_non_text_input_fails_cleanly() -> None:
    outcome = parse_json_output(None)
    assert not outcome.ok and "expected text" in (outcome.error or "")


def test_repair_leaves_valid_json_alone() -> None:
    text = '{"a": "it\'s", "b": [true, null], "c": "x, }"}'
    assert json.loads(repair_json(text)) == json.loads(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10,
)
prose = st.text(alphabet=st.characters(blacklist_characters="{}`"), max_size=30)


@given(st.dictionaries(st.text(max_size=6), json_values, max_size=4), prose, prose, st.booleans())
def test_any_object_survives_prose_and_fences(
    data: dict[str, Any], before: str, after: str, fenced: bool
) -> None:
    body = json.dumps(data, indent=1)
    text = f"{before}\n```json\n{body}\n```\n{after}" if fenced else f"{before} {body} {after}"
    outcome = parse_json_output(text)
    assert outcome.ok and outcome.data == data
