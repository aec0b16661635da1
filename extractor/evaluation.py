"""Aggregate evaluation results: no model calls here, only records in and tables out.

A record is one document scored by one model. From records this builds the H2OVL-Mississippi Table-6 layout
(rows: models; columns: document types and their average; each cell the mean of perfect-match rate,
effective TED accuracy and effective F1), the parse rates, and a per-field breakdown of what was missing,
extra or wrong. Records are kept in an append-only JSONL file so that `bayou eval --out FILE` can stop and
resume without redoing a document.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any

from rich.console import Console
from rich.table import Table

from extractor.datasets import scoring_pair
from extractor.scoring import TypeScore, normalize, score_documents

Aligner = Callable[
    [Mapping[str, Any] | None, Mapping[str, Any]], tuple[dict[str, Any] | None, dict[str, Any]]
]


@dataclass(frozen=True)
class Record:
    """One document scored by one model; `pred` is None when the output did not parse."""

    doc_type: str
    model: str
    file_name: str
    pred: dict[str, Any] | None
    gt: dict[str, Any]
    prompt_version: str | None = None
    error: str | None = None
    seconds: float | None = None
    # ground-truth values with a recorded box, and how many of them the result placed there (IoU >= 0.5)
    boxed: int | None = None
    located: int | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.model, self.doc_type, self.file_name)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Record:
        return cls(
            doc_type=str(data["doc_type"]),
            model=str(data["model"]),
            file_name=str(data["file_name"]),
            pred=data.get("pred"),
            gt=dict(data["gt"]),
            prompt_version=data.get("prompt_version"),
            error=data.get("error"),
            seconds=data.get("seconds"),
            boxed=data.get("boxed"),
            located=data.get("located"),
        )


@dataclass
class FieldCounts:
    """How one field path fared over the parsed predictions of one model on one document type."""

    correct: int = 0
    wrong: int = 0
    missing: int = 0  # in the ground truth, not in the prediction
    extra: int = 0  # in the prediction, not in the ground truth

    @property
    def errors(self) -> int:
        return self.wrong + self.missing + self.extra


@dataclass(frozen=True)
class EvaluationReport:
    models: list[str]
    doc_types: list[str]
    scores: dict[str, dict[str, TypeScore]]  # model -> doc_type -> score
    fields: dict[str, dict[str, dict[str, FieldCounts]]] = field(
        default_factory=dict
    )  # model -> type -> path
    # model -> type -> [located, boxed]: values placed where the dataset's boxes say they were drawn
    localisation: dict[str, dict[str, list[int]]] = field(default_factory=dict)

    def average(self, model: str) -> float | None:
        """Mean Table-6 score over the document types this model was evaluated on."""
        cells = [score.table6 for score in self.scores.get(model, {}).values()]
        return fmean(cells) if cells else None

    def parse_rate(self, model: str) -> float | None:
        cells = list(self.scores.get(model, {}).values())
        documents = sum(score.documents for score in cells)
        return sum(score.parsed for score in cells) / documents if documents else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "models": self.models,
            "doc_types": self.doc_types,
            "table6": {
                model: {
                    **{t: s.table6 for t, s in self.scores[model].items()},
                    "average": self.average(model),
                }
                for model in self.models
            },
            "parse_rate": {model: self.parse_rate(model) for model in self.models},
            "scores": {
                model: {doc_type: score.as_dict() for doc_type, score in by_type.items()}
                for model, by_type in self.scores.items()
            },
            "fields": {
                model: {
                    doc_type: {path: asdict(counts) for path, counts in sorted(paths.items())}
                    for doc_type, paths in by_type.items()
                }
                for model, by_type in self.fields.items()
            },
            "localisation": {
                model: {doc_type: {"located": n, "boxed": of} for doc_type, (n, of) in by_type.items()}
                for model, by_type in self.localisation.items()
            },
        }


def build_report(records: Iterable[Record], *, align: Aligner = scoring_pair) -> EvaluationReport:
    """Score every (model, doc_type) group. `align` prepares each pair for scoring (by default SROIE-style
    ground truth is mapped to schema names and the prediction projected onto them)."""
    groups: dict[tuple[str, str], list[tuple[dict[str, Any] | None, dict[str, Any]]]] = defaultdict(list)
    localisation: dict[str, dict[str, list[int]]] = defaultdict(dict)
    for record in records:
        groups[(record.model, record.doc_type)].append(align(record.pred, record.gt))
        if record.boxed:
            tally = localisation[record.model].setdefault(record.doc_type, [0, 0])
            tally[0] += record.located or 0
            tally[1] += record.boxed
    scores: dict[str, dict[str, TypeScore]] = defaultdict(dict)
    fields: dict[str, dict[str, dict[str, FieldCounts]]] = defaultdict(dict)
    for (model, doc_type), pairs in sorted(groups.items()):
        scores[model][doc_type] = score_documents([pred for pred, _ in pairs], [gt for _, gt in pairs])
        fields[model][doc_type] = field_breakdown(pairs)
    models = sorted(scores)
    doc_types = sorted({doc_type for by_type in scores.values() for doc_type in by_type})
    return EvaluationReport(models, doc_types, dict(scores), dict(fields), dict(localisation))


# ---- per-field breakdown ----------------------------------------------------------------------------------


def field_breakdown(
    pairs: Iterable[tuple[Mapping[str, Any] | None, Mapping[str, Any]]],
) -> dict[str, FieldCounts]:
    """Counts per field path ("items[].total_price"), comparing list entries position by position.

    Values are compared as Donut's scoring sees them (stripped strings, empty values absent). Unparsed
    predictions are left out: the parse rate already counts them, and they would bury every other error.
    """
    counts: dict[str, FieldCounts] = defaultdict(FieldCounts)
    for pred, gt in pairs:
        if pred is None:
            continue
        predicted, expected = leaf_values(pred), leaf_values(gt)
        for path in predicted.keys() | expected.keys():
            tally = counts[_generic(path)]
            if path not in predicted:
                tally.missing += 1
            elif path not in expected:
                tally.extra += 1
            elif predicted[path] == expected[path]:
                tally.correct += 1
            else:
                tally.wrong += 1
    return dict(counts)


def leaf_values(document: Any) -> dict[str, str]:
    """Concrete path -> value of every non-empty leaf: {"items[0].total_price": "4.50"}.

    Leaves are normalised as Donut's scoring sees them (stripped strings; None, "", 0 and False absent).
    """
    leaves: dict[str, str] = {}

    def visit(value: Any, path: str) -> None:
        if isinstance(value, Mapping):
            for key, child in value.items():
                visit(child, f"{path}.{key}" if path else str(key))
        elif isinstance(value, list):
            for index, child in enumerate(value):
                visit(child, f"{path}[{index}]")
        elif normalized := normalize(value):
            leaves[path] = normalized[0]

    visit(document, "")
    return leaves


def _generic(path: str) -> str:
    return re.sub(r"\[\d+\]", "[]", path)


# ---- rendering --------------------------------------------------------------------------------------------


def render_report(report: EvaluationReport, console: Console, *, top_fields: int = 8) -> None:
    """The Table-6 table, the detailed scores, and the fields with the most errors."""
    console.print(table6_table(report))
    console.print(detail_table(report))
    if report.localisation:
        console.print(localisation_table(report))
    for model in report.models:
        for doc_type in report.doc_types:
            counts = report.fields.get(model, {}).get(doc_type, {})
            if any(tally.errors for tally in counts.values()):
                console.print(fields_table(model, doc_type, counts, top_fields))


def table6_table(report: EvaluationReport) -> Table:
    table = Table(title="Table-6 score: mean of perfect match, effective TED accuracy, effective F1 (%)")
    table.add_column("model")
    for doc_type in report.doc_types:
        table.add_column(doc_type, justify="right")
    table.add_column("average", justify="right")
    table.add_column("parse rate", justify="right")
    for model in report.models:
        cells = [report.scores[model].get(doc_type) for doc_type in report.doc_types]
        table.add_row(
            model,
            *(_percent(cell.table6 if cell else None) for cell in cells),
            _percent(report.average(model)),
            _percent(report.parse_rate(model)),
        )
    return table


def detail_table(report: EvaluationReport) -> Table:
    table = Table(title="Scores per model and document type (%)")
    for name in ("model", "doc type", "docs"):
        table.add_column(name)
    for name in ("parsed", "perfect", "TED acc", "F1", "eff. TED", "eff. F1", "Table 6"):
        table.add_column(name, justify="right")
    for model in report.models:
        for doc_type, s in sorted(report.scores[model].items()):
            values = (s.parse_rate, s.perfect_match_rate, s.ted_accuracy, s.f1)
            effective = (s.effective_ted_accuracy, s.effective_f1, s.table6)
            table.add_row(model, doc_type, str(s.documents), *(_percent(v) for v in (*values, *effective)))
    return table


def localisation_table(report: EvaluationReport) -> Table:
    table = Table(title="Localisation: ground-truth values placed where they were drawn (IoU >= 0.5)")
    for name in ("model", "doc type"):
        table.add_column(name)
    for name in ("located", "with a box", "%"):
        table.add_column(name, justify="right")
    for model, by_type in sorted(report.localisation.items()):
        for doc_type, (found, boxed) in sorted(by_type.items()):
            table.add_row(model, doc_type, str(found), str(boxed), _percent(found / boxed if boxed else None))
    return table


def fields_table(model: str, doc_type: str, counts: Mapping[str, FieldCounts], top: int) -> Table:
    table = Table(title=f"{model} / {doc_type}: fields with the most errors")
    table.add_column("field")
    for name in ("correct", "wrong", "missing", "extra"):
        table.add_column(name, justify="right")
    with_errors = [(path, tally) for path, tally in counts.items() if tally.errors]
    worst = sorted(with_errors, key=lambda item: (-item[1].errors, item[0]))[:top]
    for path, tally in worst:
        table.add_row(path, str(tally.correct), str(tally.wrong), str(tally.missing), str(tally.extra))
    return table


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def report_to_json(report: EvaluationReport) -> str:
    return json.dumps(report.as_dict(), indent=2, ensure_ascii=False)


# ---- resumable record store -------------------------------------------------------------------------------


class RecordStore:
    """Records appended one JSON line each; reading back tells which documents are done.

    A line cut short by a crash is skipped on reading (that document simply counts as not done), and the
    next append starts on a fresh line. A document recorded twice keeps its last record.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def append(self, record: Record) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+b") as handle:
            handle.seek(0, os.SEEK_END)
            if handle.tell() and not self._ends_with_newline(handle):
                handle.write(b"\n")
            handle.write(record.to_json().encode("utf-8") + b"\n")
            handle.flush()
            os.fsync(handle.fileno())

    @staticmethod
    def _ends_with_newline(handle: Any) -> bool:
        handle.seek(-1, os.SEEK_END)
        last = handle.read(1)
        handle.seek(0, os.SEEK_END)
        return last == b"\n"

    def records(self) -> list[Record]:
        if not self.path.exists():
            return []
        latest: dict[tuple[str, str, str], Record] = {}
        for line in self.path.read_text(encoding="utf-8").splitlines():
            record = _read_line(line)
            if record is not None:
                latest[record.key] = record
        return list(latest.values())

    def done(self) -> set[tuple[str, str, str]]:
        """(model, doc_type, file_name) of every recorded document."""
        return {record.key for record in self.records()}

    def is_done(self, model: str, doc_type: str, file_name: str) -> bool:
        """One look-up (reads the file); in a loop, take `done()` once instead."""
        return (model, doc_type, file_name) in self.done()


def _read_line(line: str) -> Record | None:
    if not line.strip():
        return None
    try:
        return Record.from_dict(json.loads(line))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
