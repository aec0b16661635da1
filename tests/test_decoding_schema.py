"""The schema the grammar decodes with: bounded, exact, and faithful to the document schema."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from extractor.decoding_schema import DATE_PATTERN, TIME_PATTERN, bounded_pattern, decoding_schema
from extractor.schemas import available_types, load_schema


@given(st.dates(min_value=dt.date(1800, 1, 1), max_value=dt.date(2199, 12, 31)))
def test_every_real_date_matches(day: dt.date) -> None:
    assert re.fullmatch(DATE_PATTERN, day.isoformat())


@pytest.mark.parametrize(
    "text", ["2023-02-29", "2024-04-31", "2024-13-01", "2024-00-10", "0000-01-01", "1900-02-29"]
)
def test_impossible_dates_do_not_match(text: str) -> None:
    assert not re.fullmatch(DATE_PATTERN, text)


def test_leap_days_match() -> None:
    for year in (1904, 2000, 2024, 2096):
        assert re.fullmatch(DATE_PATTERN, f"{year}-02-29")


def test_time_pattern() -> None:
    assert re.fullmatch(TIME_PATTERN, "23:59") and re.fullmatch(TIME_PATTERN, "00:00:59")
    assert not re.fullmatch(TIME_PATTERN, "24:00") and not re.fullmatch(TIME_PATTERN, "12:60")


def test_unbounded_pattern_gets_capped_to_max_length() -> None:
    pattern = bounded_pattern(r"^-?[0-9]+\.[0-9]{2}$", 16)
    assert pattern == r"^-?[0-9]{1,12}\.[0-9]{2}$"
    assert re.fullmatch(pattern, "-123456789012.34") and not re.fullmatch(pattern, "1234567890123.45")
    assert bounded_pattern(r"^[0-9]{9}$", 9) == r"^[0-9]{9}$"  # already finite: untouched


def test_property_names_that_look_like_keywords_survive() -> None:
    schema = {
        "type": "object",
        "properties": {
            "description": {"type": "string", "description": "d"},
            "title": {"type": ["string", "null"]},
        },
        "required": ["description", "title"],
    }
    rewritten = decoding_schema(schema)
    assert list(rewritten["properties"]) == ["description", "title"]
    assert "description" not in rewritten["properties"]["description"]  # the annotation is dropped
    assert schema["properties"]["description"]["description"] == "d"  # the input is not modified


@pytest.mark.parametrize("doc_type", available_types())
def test_every_string_and_array_is_bounded(doc_type: str) -> None:
    def walk(node):
        if isinstance(node, dict):
            types = node.get("type") if isinstance(node.get("type"), list) else [node.get("type")]
            if "string" in types and "enum" not in node:
                assert "pattern" in node and "+" not in node["pattern"].replace("\\+", "")
            if "array" in types:
                assert "maxItems" in node
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(decoding_schema(load_schema(doc_type)))
