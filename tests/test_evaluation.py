from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from extractor.evaluation import (
    FieldCounts,
    Record,
    RecordStore,
    build_report,
    field_breakdown,
    render_report,
    report_to_json,
)

RECEIPT = {"merchant_name": "CAFE", "total": "9.00", "items": [{"description": "TEA", "total_price": "9.00"}]}
CHECK = {"payee": "ACME", "amount_numeric": "5.00", "signature_present": True}


def records() -> list[Record]:
    return [
        Record("receipt", "small", "r1.jpg", RECEIPT, RECEIPT),
        Record("receipt", "small", "r2.jpg", None, RECEIPT, error="invalid JSON"),  # unparseable: a miss
        Record("check", "small", "c1.jpg", CHECK, CHECK),
        Record("receipt", "large", "r1.jpg", RECEIPT, RECEIPT),
        Record("receipt", "large", "r2.jpg", RECEIPT | {"total": "9.50"}, RECEIPT),
    ]


def test_table_has_models_as_rows_and_doc_types_as_columns() -> None:
    report = build_report(records())
    assert report.models == ["large", "small"]
    assert report.doc_types == ["check", "receipt"]
    table = report.as_dict()["table6"]
    assert set(table["small"]) == {"check", "receipt", "average"}
    assert set(table["large"]) == {"receipt", "average"}  # no check documents for this model


def test_an_unparseable_output_counts_as_a_miss() -> None:
    small = build_report(records()).scores["small"]["receipt"]
    assert (small.documents, small.parsed) == (2, 1)
    # one perfect document and one miss: every effective score halves
    assert small.perfect_match_rate == small.effective_ted_accuracy == small.effective_f1 == 0.5
    assert small.table6 == pytest.approx(0.5)


def test_average_and_parse_rate_per_model() -> None:
    report = build_report(records())
    assert report.average("small") == pytest.approx((1.0 + 0.5) / 2)
    assert report.parse_rate("small") == pytest.approx(2 / 3)
    large = report.scores["large"]["receipt"]
    assert large.perfect_match_rate == 0.5 and large.parse_rate == 1.0
    assert 0.5 < large.table6 < 1.0
    assert report.average("large") == pytest.approx(large.table6)
    assert report.average("absent") is None


def test_field_breakdown_counts_missing_extra_and_wrong() -> None:
    gt = {"total": "9.00", "tax": "1.00", "items": [{"description": "TEA"}, {"description": "CAKE"}]}
    pred = {"total": "9.50", "tip": "2.00", "items": [{"description": "TEA"}], "merchant_name": None}
    counts = field_breakdown([(pred, gt), (None, gt)])
    assert counts == {
        "total": FieldCounts(wrong=1),
        "tax": FieldCounts(missing=1),
        "tip": FieldCounts(extra=1),
        "items[].description": FieldCounts(correct=1, missing=1),
    }


def test_report_renders_with_rich() -> None:
    console = Console(record=True, width=160)
    render_report(build_report(records()), console)
    text = console.export_text()
    assert "Table-6 score" in text
    assert "small" in text and "large" in text
    assert "50.0" in text  # the small model's receipt cell
    assert "large / receipt: fields with the most errors" in text
    assert "—" in text  # the large model has no check cell


def test_report_serialises_to_json() -> None:
    data = json.loads(report_to_json(build_report(records())))
    assert data["models"] == ["large", "small"]
    assert data["table6"]["small"]["receipt"] == pytest.approx(0.5)
    assert data["scores"]["small"]["receipt"]["parse_rate"] == 0.5
    assert data["fields"]["large"]["receipt"]["total"] == {"correct": 1, "wrong": 1, "missing": 0, "extra": 0}


def test_sroie_records_are_aligned_before_scoring() -> None:
    gt = {"company": "BOOK TA .K", "date": "25/12/2018", "address": "NO.53, JALAN SAGU 18", "total": "9.00"}
    pred = {
        "merchant_name": "BOOK TA .K",
        "merchant_address": "NO.53, JALAN SAGU 18",
        "transaction_date": "2018-12-25",
        "total": "9.00",
        "items": [{"description": "BOOK", "total_price": "9.00"}],
    }
    report = build_report([Record("receipt", "small", "000.jpg", pred, gt)])
    assert report.scores["small"]["receipt"].table6 == 1.0


# ---- the resumable store ----------------------------------------------------------------------------------


def test_store_round_trips_records_and_knows_what_is_done(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "out" / "eval.jsonl")
    assert store.records() == [] and store.done() == set()
    for record in records():
        store.append(record)
    assert sorted(store.records(), key=lambda r: r.key) == sorted(records(), key=lambda r: r.key)
    assert store.is_done("small", "receipt", "r2.jpg")
    assert not store.is_done("large", "check", "c1.jpg")
    assert len(store.path.read_text().splitlines()) == len(records())


def test_store_skips_a_line_cut_short_and_appends_on_a_fresh_line(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "eval.jsonl")
    first, second, third = records()[:3]
    store.append(first)
    with store.path.open("a") as handle:
        handle.write(second.to_json()[:25])  # the process died mid-write
    assert store.done() == {first.key}
    store.append(third)
    assert store.done() == {first.key, third.key}


def test_store_keeps_the_last_record_of_a_document(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "eval.jsonl")
    store.append(Record("receipt", "small", "r1.jpg", None, RECEIPT, error="timeout"))
    store.append(Record("receipt", "small", "r1.jpg", RECEIPT, RECEIPT))
    (only,) = store.records()
    assert only.pred == RECEIPT and only.error is None
