from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from extractor.datasets import (
    DatasetError,
    UnsafePath,
    project_prediction,
    read_dataset,
    resolve_inside,
    scoring_pair,
    sroie_to_schema,
)
from extractor.schemas import MONEY_PATTERN, UnknownDocumentType
from extractor.scoring import ted_accuracy

SROIE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "sroie-dev"
needs_sroie = pytest.mark.skipif(
    not SROIE.is_dir(), reason="../shared/data/sroie-dev is not beside the checkout"
)


def write_dataset(folder: Path, lines: list[Any], files: tuple[str, ...] = ("a.jpg",)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in files:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"\xff\xd8")
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    (folder / "metadata.jsonl").write_text(text + "\n")
    return folder


def entry(**fields: Any) -> dict[str, Any]:
    return {"file_name": "a.jpg", "doc_type": "receipt", "ground_truth": {"total": "1.00"}} | fields


# ---- the real SROIE sample --------------------------------------------------------------------------------


@needs_sroie
def test_reads_the_sroie_sample() -> None:
    entries = read_dataset(SROIE)
    assert len(entries) == 20
    assert [e.file_name for e in entries[:2]] == ["000.jpg", "001.jpg"]
    assert all(e.doc_type == "receipt" and e.paths[0].is_file() for e in entries)
    assert all(set(e.ground_truth) == {"company", "date", "address", "total"} for e in entries)


@needs_sroie
def test_sroie_ground_truth_maps_to_receipt_fields() -> None:
    for e in read_dataset(SROIE):
        mapped = sroie_to_schema(e.ground_truth)
        assert set(mapped) == {"merchant_name", "transaction_date", "merchant_address", "total"}
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", mapped["transaction_date"]), e.ground_truth["date"]
        assert re.fullmatch(MONEY_PATTERN, mapped["total"])
    first = sroie_to_schema(read_dataset(SROIE)[0].ground_truth)
    assert first["transaction_date"] == "2018-12-25"  # printed 25/12/2018


@needs_sroie
def test_a_full_receipt_prediction_scores_against_sroie_keys_only() -> None:
    gt = read_dataset(SROIE)[0].ground_truth
    prediction = {
        "merchant_name": gt["company"],
        "merchant_address": gt["address"],
        "transaction_date": "2018-12-25",
        "total": "9.00",
        "items": [{"description": "BOOK", "total_price": "9.00"}],  # not in SROIE: must not count
        "tax": None,
    }
    pred, mapped = scoring_pair(prediction, gt)
    assert set(pred or {}) == set(mapped)
    assert ted_accuracy(pred, mapped) == 1.0
    wrong_total, _ = scoring_pair(prediction | {"total": "9.50"}, gt)
    assert ted_accuracy(wrong_total, mapped) < 1.0


def test_projection_keeps_gt_keys_and_marks_missing_ones_null() -> None:
    assert project_prediction({"a": 1, "b": 2}, ["a", "c"]) == {"a": 1, "c": None}
    assert project_prediction(None, ["a"]) is None


def test_non_sroie_ground_truth_is_scored_whole() -> None:
    gt = {"merchant_name": "X", "total": "1.00"}
    pred = {"merchant_name": "X", "total": "1.00", "tip": "2.00"}
    assert scoring_pair(pred, gt) == (pred, gt)


# ---- format and confinement -------------------------------------------------------------------------------


def test_multi_image_entries(tmp_path: Path) -> None:
    line = entry(file_names=["dl/front.jpg", "dl/back.jpg"], doc_type="drivers_license")
    del line["file_name"]
    folder = write_dataset(tmp_path / "ds", [line], files=("dl/front.jpg", "dl/back.jpg"))
    (only,) = read_dataset(folder)
    assert only.file_names == ("dl/front.jpg", "dl/back.jpg")
    assert only.file_name == "dl/front.jpg"
    assert [p.name for p in only.paths] == ["front.jpg", "back.jpg"]


@pytest.mark.parametrize(
    "name", ["../secret.jpg", "a/../../secret.jpg", "/etc/passwd", "C:\\x.jpg", "a\\b.jpg"]
)
def test_names_that_leave_the_folder_are_rejected(tmp_path: Path, name: str) -> None:
    folder = write_dataset(tmp_path / "ds", [entry(file_name=name)])
    with pytest.raises(UnsafePath) as caught:
        read_dataset(folder, check_files=False)
    assert caught.value.code == "unsafe_path"


def test_symlinks_out_of_the_folder_are_rejected(tmp_path: Path) -> None:
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"x")
    folder = write_dataset(tmp_path / "ds", [entry(file_name="link.jpg")])
    (folder / "link.jpg").symlink_to(outside)
    with pytest.raises(UnsafePath):
        read_dataset(folder)
    (folder / "inner.jpg").symlink_to(folder / "a.jpg")
    assert resolve_inside(folder, "inner.jpg", must_exist=True) == (folder / "a.jpg").resolve()


@pytest.mark.parametrize(
    ("line", "error", "code"),
    [
        ("{not json", DatasetError, "bad_dataset"),
        ('["a list"]', DatasetError, "bad_dataset"),
        (entry(file_names=["a.jpg"]), DatasetError, "bad_dataset"),  # both file_name and file_names
        (entry(file_name=""), DatasetError, "bad_dataset"),
        (entry(doc_type="passport"), UnknownDocumentType, "unknown_doc_type"),
        (entry(ground_truth="total 1.00"), DatasetError, "bad_dataset"),
        (entry(file_name="missing.jpg"), DatasetError, "missing_file"),
    ],
)
def test_bad_lines_are_typed_errors_naming_the_line(
    tmp_path: Path, line: Any, error: type, code: str
) -> None:
    folder = write_dataset(tmp_path / "ds", [entry(), "", line])
    with pytest.raises(error) as caught:
        read_dataset(folder)
    assert caught.value.code == code
    assert "metadata.jsonl:3" in str(caught.value)


def test_missing_files_are_allowed_when_not_checked(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path / "ds", [entry(file_name="later.jpg")])
    assert read_dataset(folder, check_files=False)[0].file_name == "later.jpg"


def test_a_folder_without_metadata_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as caught:
        read_dataset(tmp_path)
    assert caught.value.code == "missing_metadata"
