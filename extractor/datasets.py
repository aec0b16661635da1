"""Evaluation datasets on disk, and the key mapping that lets SROIE-style ground truth be scored.

A dataset is a folder holding `metadata.jsonl`, one document per line:

    {"file_name": "receipts/r001.jpg", "doc_type": "receipt", "ground_truth": {...}}
    {"file_names": ["dl/front.jpg", "dl/back.jpg"], "doc_type": "drivers_license", "ground_truth": {...}}

An optional "boxes" object says where each ground-truth value is on the page (JSON pointer -> {"page": n,
"box": [x0, y0, x1, y1] page fractions}); `bayou samples make` writes it, and localisation is measured
against it.

File names are relative to the folder and must stay inside it: absolute paths, `..`, backslashes and
symlinks that lead out are rejected, because a dataset is input and may come from anyone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from extractor.errors import BayouError
from extractor.schemas import UnknownDocumentType, available_types
from extractor.validation import normalise_date, normalise_money

METADATA_FILE = "metadata.jsonl"

# ICDAR 2019 SROIE key-information names -> receipt schema names
SROIE_KEYS = {
    "company": "merchant_name",
    "date": "transaction_date",
    "address": "merchant_address",
    "total": "total",
}


class DatasetError(BayouError):
    code = "bad_dataset"


class UnsafePath(DatasetError):
    code = "unsafe_path"


@dataclass(frozen=True)
class DatasetEntry:
    file_names: tuple[str, ...]  # as written in metadata.jsonl
    paths: tuple[Path, ...]  # resolved, inside the dataset folder
    doc_type: str
    ground_truth: dict[str, Any]
    line: int
    # where each ground-truth value is drawn: JSON pointer -> {"page": n, "box": [x0, y0, x1, y1] fractions}
    boxes: dict[str, Any] = field(default_factory=dict)

    @property
    def file_name(self) -> str:
        """The document's name in results: its first (or only) file."""
        return self.file_names[0]


def read_dataset(root: str | Path, *, check_files: bool = True) -> list[DatasetEntry]:
    """Every entry of `root`/metadata.jsonl, in file order. `check_files` also requires the files to exist."""
    folder = Path(root)
    metadata = folder / METADATA_FILE
    if not metadata.is_file():
        raise DatasetError(f"{metadata} not found", code="missing_metadata")
    entries = []
    with metadata.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                entries.append(_entry(folder, line, number, check_files))
    return entries


def _entry(folder: Path, line: str, number: int, check_files: bool) -> DatasetEntry:
    where = f"{METADATA_FILE}:{number}"
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{where}: not JSON ({exc.msg})") from exc
    if not isinstance(record, dict):
        raise DatasetError(f"{where}: expected a JSON object")
    names = _file_names(record, where)
    doc_type = record.get("doc_type")
    if doc_type not in available_types():
        raise UnknownDocumentType(f"{where}: unknown doc_type {doc_type!r}")
    ground_truth = record.get("ground_truth")
    if not isinstance(ground_truth, dict):
        raise DatasetError(f"{where}: ground_truth must be a JSON object")
    try:
        paths = tuple(resolve_inside(folder, name, must_exist=check_files) for name in names)
    except DatasetError as exc:
        raise type(exc)(f"{where}: {exc.message}", code=exc.code) from exc
    boxes = record.get("boxes", {})
    if not isinstance(boxes, dict):
        raise DatasetError(f"{where}: boxes must be a JSON object")
    return DatasetEntry(names, paths, doc_type, ground_truth, number, boxes)


def _file_names(record: Mapping[str, Any], where: str) -> tuple[str, ...]:
    if ("file_name" in record) == ("file_names" in record):
        raise DatasetError(f"{where}: give exactly one of file_name and file_names")
    names = [record["file_name"]] if "file_name" in record else record["file_names"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise DatasetError(f"{where}: file names must be non-empty strings")
    return tuple(names)


def resolve_inside(root: Path, name: str, *, must_exist: bool = False) -> Path:
    """`root`/`name` resolved, or UnsafePath when `name` could address anything outside `root`."""
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or "\\" in name:
        raise UnsafePath(f"file name {name!r} is not a relative path inside the dataset")
    if ".." in posix.parts:
        raise UnsafePath(f"file name {name!r} climbs out of the dataset with '..'")
    base = root.resolve()
    path = (base / posix).resolve()
    if not path.is_relative_to(base):
        raise UnsafePath(f"file name {name!r} leads outside the dataset (through a symlink)")
    if must_exist and not path.is_file():
        raise DatasetError(f"file {name!r} not found in {root}", code="missing_file")
    return path


# ---- SROIE ------------------------------------------------------------------------------------------------


def is_sroie_ground_truth(gt: Mapping[str, Any]) -> bool:
    return bool(gt) and set(gt) <= set(SROIE_KEYS)


def sroie_to_schema(gt: Mapping[str, Any]) -> dict[str, Any]:
    """SROIE ground truth under receipt-schema names and conventions (ISO date, decimal total).

    SROIE receipts are Malaysian, so numeric dates are read day-first; a value that cannot be read is kept
    as it is rather than dropped.
    """
    renamed = {SROIE_KEYS[key]: value for key, value in gt.items()}
    if isinstance(date := renamed.get("transaction_date"), str):
        renamed["transaction_date"] = normalise_date(date, day_first=True) or date
    if (total := renamed.get("total")) is not None:
        renamed["total"] = normalise_money(total) or total
    return renamed


def project_prediction(pred: Mapping[str, Any] | None, keys: Any) -> dict[str, Any] | None:
    """Only the top-level keys a partial ground truth has (others are not errors there); None stays None."""
    if pred is None:
        return None
    return {key: pred.get(key) for key in keys}


def scoring_pair(
    pred: Mapping[str, Any] | None, gt: Mapping[str, Any]
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """What to score for one document: SROIE ground truth is mapped to schema names and the prediction
    projected onto them; any other ground truth is scored as it is, against the whole prediction."""
    if is_sroie_ground_truth(gt):
        mapped = sroie_to_schema(gt)
        return project_prediction(pred, mapped), mapped
    return (dict(pred) if pred is not None else None), dict(gt)
