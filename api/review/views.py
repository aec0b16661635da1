"""What the review pages show, read from storage: the queue, one document with its form, the audit
trail and the accuracy dashboard. No HTTP here; routes.py turns these into responses."""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from api.review.forms import FormField, build_form, changed_pointers, field_name
from api.review.grounding import FieldBox, annotate, grounding_of, named_fields
from extractor.schemas import load_schema
from storage.models import (
    AuditEntry,
    Document,
    DocumentStatus,
    ExtractionRun,
    GroundTruthSource,
    Review,
    Score,
)

LOW_CONFIDENCE = 0.5
QUEUE_LIMIT = 500
AWAITING = "awaiting"
ALL = "all"
AWAITING_STATUSES = (DocumentStatus.NEEDS_REVIEW.value, DocumentStatus.DONE.value)
SORTS = ("oldest", "confidence")

# the fields each cross-field check reads, so a failed check can be shown on them
CHECK_FIELDS: dict[str, list[str]] = {
    "receipt_items_sum": ["/subtotal", "/items"],
    "receipt_total_sum": ["/subtotal", "/tax", "/tip", "/total"],
    "check_amount_words": ["/amount_numeric", "/amount_words"],
    "check_routing_number": ["/routing_number"],
    "check_date_plausible": ["/date"],
    "license_date_order": ["/date_of_birth", "/issue_date", "/expiration_date"],
    "license_age_at_issue": ["/date_of_birth", "/issue_date"],
    "license_state_codes": ["/issuing_state", "/address/state"],
}


# --- queue -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueFilter:
    status: str = AWAITING
    doc_type: str = ""
    model: str = ""
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    sort: str = "oldest"

    def query(self) -> dict[str, str]:
        """As query parameters, defaults left out (for links that keep the reviewer's filters)."""
        values = {
            "status": self.status if self.status != AWAITING else "",
            "doc_type": self.doc_type,
            "model": self.model,
            "date_from": self.date_from.isoformat() if self.date_from else "",
            "date_to": self.date_to.isoformat() if self.date_to else "",
            "sort": self.sort if self.sort != "oldest" else "",
        }
        return {key: value for key, value in values.items() if value}


@dataclass(frozen=True)
class QueueItem:
    document: Document
    confidence: float | None
    flags: int

    @property
    def key(self) -> tuple[Any, ...]:
        return _sort_key(self)


@dataclass
class Queue:
    items: list[QueueItem]
    counts: dict[str, int]
    models: list[str]
    truncated: bool


def parse_date(text: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text) if text else None
    except ValueError:
        return None


def load_queue(session: Session, filters: QueueFilter) -> Queue:
    statement = _filtered(select(Document), filters, with_status=True)
    statement = statement.order_by(Document.created_at, Document.id).limit(QUEUE_LIMIT + 1)
    rows = list(session.scalars(statement.options(selectinload(Document.runs))))
    items = [_queue_item(document) for document in rows[:QUEUE_LIMIT]]
    if filters.sort == "confidence":
        items.sort(key=_sort_key)
    counts_statement = _filtered(select(Document.status, func.count()), filters, with_status=False)
    counts = {status.value: 0 for status in DocumentStatus}
    counts.update(dict(session.execute(counts_statement.group_by(Document.status)).all()))
    models = sorted(m for m in session.scalars(select(Document.model).distinct()) if m)
    return Queue(items, counts, models, len(rows) > QUEUE_LIMIT)


def _filtered(statement: Any, filters: QueueFilter, *, with_status: bool) -> Any:
    if with_status and filters.status == AWAITING:
        statement = statement.where(Document.status.in_(AWAITING_STATUSES))
    elif with_status and filters.status != ALL:
        statement = statement.where(Document.status == filters.status)
    if filters.doc_type:
        statement = statement.where(Document.doc_type == filters.doc_type)
    if filters.model:
        statement = statement.where(Document.model == filters.model)
    if filters.date_from:
        statement = statement.where(Document.created_at >= _midnight(filters.date_from))
    if filters.date_to:
        statement = statement.where(Document.created_at < _midnight(filters.date_to + dt.timedelta(days=1)))
    return statement


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def _queue_item(document: Document) -> QueueItem:
    run = document.runs[-1] if document.runs else None
    return QueueItem(document, lowest_confidence(run), len(field_messages(run)) if run is not None else 0)


def lowest_confidence(run: ExtractionRun | None) -> float | None:
    if run is None:
        return None
    values = [v for v in (run.confidence or {}).values() if isinstance(v, int | float)]
    if values:
        return float(min(values))
    # output that did not parse has no confidence at all: the least trustworthy
    return 0.0 if run.data is None else None


def _sort_key(item: QueueItem) -> tuple[Any, ...]:
    confidence = item.confidence if item.confidence is not None else 1.0
    return (confidence, item.document.created_at, item.document.id)


def neighbours(session: Session, filters: QueueFilter, document: Document) -> tuple[str | None, str | None]:
    """The previous and next documents in the queue as filtered, around `document` (which need not be in
    it any more, e.g. once approved)."""
    queue = load_queue(session, filters)
    current = _queue_item(document)
    key = _sort_key(current) if filters.sort == "confidence" else (document.created_at, document.id)
    keys = [
        (item.key if filters.sort == "confidence" else (item.document.created_at, item.document.id), item)
        for item in queue.items
    ]
    before = [item for k, item in keys if k < key]
    after = [item for k, item in keys if k > key]
    return (before[-1].document.id if before else None, after[0].document.id if after else None)


# --- one document --------------------------------------------------------------------------------------


@dataclass
class DocumentView:
    document: Document
    run: ExtractionRun | None
    fields: list[FormField]
    document_messages: list[str]
    failed_checks: list[dict[str, Any]]
    audit: list[AuditEntry]
    reviewable: bool
    form_data: Any = None
    errors: dict[str, list[str]] = field(default_factory=dict)
    boxes: list[FieldBox] = field(default_factory=list)  # where the run found each value, page by page


def field_messages(run: ExtractionRun | None) -> dict[str, list[str]]:
    """Messages by pointer: schema errors, failed cross-field checks, low confidence."""
    messages: dict[str, list[str]] = defaultdict(list)
    if run is None:
        return messages
    for error in run.errors or []:
        messages[str(error.get("path", ""))].append(str(error.get("message", "invalid")))
    for check in run.checks or []:
        named = named_fields(check)
        if named is not None:
            # grounding's findings are marked on each field named (not found, the barcode's value): no
            # message repeats them, but the field still counts among the flagged
            for pointer in named:
                messages.setdefault(pointer, [])
        elif check.get("ok") is False:
            for pointer in CHECK_FIELDS.get(str(check.get("name")), [""]):
                messages[pointer].append(f"check {check.get('name')}: {check.get('message', 'failed')}")
    for pointer, value in (run.confidence or {}).items():
        if isinstance(value, int | float) and value < LOW_CONFIDENCE:
            messages[pointer].append(f"low confidence ({value:.2f})")
    return messages


def document_view(
    session: Session,
    document: Document,
    *,
    form_data: Any = None,
    errors: dict[str, list[str]] | None = None,
) -> DocumentView:
    """`form_data`/`errors`: a submitted form being shown again with what was wrong with it."""
    run = document.runs[-1] if document.runs else None
    reviewable = document.status in AWAITING_STATUSES
    # the flags describe the model's output: once reviewed, the page shows the reviewed data instead
    messages = field_messages(run) if reviewable else {}
    for pointer, texts in (errors or {}).items():
        messages.setdefault(pointer, []).extend(texts)
    data = form_data if form_data is not None else _shown_data(document, run)
    fields = build_form(load_schema(document.doc_type), data, messages)
    grounding = grounding_of(run, fields, document.pages or 0, reviewable=reviewable)
    annotate(fields, grounding)
    known = _pointers(fields)
    document_messages = [m for pointer, texts in messages.items() if pointer not in known for m in texts]
    failed = [c for c in (run.checks or []) if c.get("ok") is False] if run is not None and reviewable else []
    audit = list(
        session.scalars(
            select(AuditEntry).where(AuditEntry.document_id == document.id).order_by(AuditEntry.id.desc())
        )
    )
    return DocumentView(
        document,
        run,
        fields,
        document_messages,
        failed,
        audit,
        reviewable,
        form_data,
        errors or {},
        grounding.boxes,
    )


def _shown_data(document: Document, run: ExtractionRun | None) -> Any:
    """A reviewed document shows what the reviewer approved; any other its latest extraction."""
    review = document.reviews[-1] if document.reviews else None
    if review is not None and review.corrected_data is not None:
        return review.corrected_data
    return run.data if run is not None else None


def _pointers(fields: list[FormField]) -> set[str]:
    found: set[str] = set()
    for item in fields:
        found.add(item.pointer)
        found |= _pointers(item.children)
        for row in item.rows:
            found |= _pointers(row)
    return found


# --- dashboard ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DayStats:
    day: dt.date
    documents: int
    perfect_match_rate: float
    ted_accuracy: float
    f1: float


@dataclass
class SeriesGroup:
    doc_type: str
    model: str
    days: list[DayStats]
    overall: DayStats


@dataclass
class Dashboard:
    groups: list[SeriesGroup]
    corrected_fields: list[tuple[str, str, int]]
    source: str


def load_dashboard(session: Session, *, source: str = GroundTruthSource.REVIEWED.value) -> Dashboard:
    statement = (
        select(Score, ExtractionRun.model_id, Document.doc_type, Document.model)
        .join(ExtractionRun, Score.run_id == ExtractionRun.id)
        .join(Document, ExtractionRun.document_id == Document.id)
        .order_by(Score.created_at)
    )
    if source != ALL:
        statement = statement.where(Score.ground_truth_source == source)
    by_group: dict[tuple[str, str], dict[dt.date, list[Score]]] = defaultdict(lambda: defaultdict(list))
    for score, model_id, doc_type, model in session.execute(statement):
        by_group[(doc_type, model or model_id)][score.created_at.date()].append(score)
    groups = []
    for (doc_type, model), days in sorted(by_group.items()):
        stats = [_stats(day, scores) for day, scores in sorted(days.items())]
        everything = [score for scores in days.values() for score in scores]
        groups.append(SeriesGroup(doc_type, model, stats, _stats(stats[-1].day, everything)))
    return Dashboard(groups, most_corrected(session), source)


def _stats(day: dt.date, scores: list[Score]) -> DayStats:
    return DayStats(
        day,
        len(scores),
        sum(score.perfect_match for score in scores) / len(scores),
        fmean(score.ted_accuracy for score in scores),
        fmean(score.f1 for score in scores),
    )


def most_corrected(session: Session, *, limit: int = 15) -> list[tuple[str, str, int]]:
    """(doc_type, field, documents) for the fields reviewers changed most often."""
    reviews = session.scalars(
        select(Review)
        .where(Review.corrected_data.is_not(None))
        .options(selectinload(Review.document).selectinload(Document.runs))
    )
    counts: Counter[tuple[str, str]] = Counter()
    for review in reviews:
        # an approval as extracted stores None, which the JSON column keeps as JSON null, not SQL NULL:
        # the query's IS NOT NULL lets those through
        if review.corrected_data is None:
            continue
        document = review.document
        runs = [run for run in document.runs if run.created_at <= review.created_at] or document.runs
        before = runs[-1].data if runs else None
        names = {field_name(pointer) for pointer in changed_pointers(before, review.corrected_data)}
        counts.update((document.doc_type, name) for name in names)
    return [(doc_type, name, count) for (doc_type, name), count in counts.most_common(limit)]
