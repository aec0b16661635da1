"""What a reviewer's decision does, whether it comes from the review UI or the REST API: the review and the
status it implies (`storage.documents.record_review`), a score of the latest run against the reviewed data
(`workers.review_scores`, ground truth source "reviewed"; in place, or later when the caller says how), and
an audit entry naming the changed fields, never their values (driver's licences are personal data).

Approved data becomes ground truth, so what the REST API approves is checked first (`check_approved_data`):
bounded in size before anything looks at it, then valid against the document type's schema, as the review
UI requires of its form."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import BackgroundTasks
from sqlalchemy.orm import Session

from api.deps import AppState
from api.errors import ApiError
from api.review.forms import changed_pointers
from extractor.validation import schema_errors
from storage.documents import get_document_fresh, record_audit, record_review
from storage.models import Document, ReviewAction, Score
from workers.review_scores import score_approval, score_review_in, send_score_review

# how a caller has a review scored later (a task, a background job); given the document id
ScoreLater = Callable[[str], None]

# far above any document type's schema (a receipt has at most 100 lines of 4 fields), far below what
# costs the API anything to walk: data past these is refused before validation looks at it
MAX_REVIEW_VALUES = 10_000
MAX_REVIEW_DEPTH = 12
MAX_REVIEW_TEXT = 10_000
MAX_PATHS_NAMED = 20

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    action: ReviewAction
    corrected: list[str]
    score: Score | None


def score_later(state: AppState, background: BackgroundTasks) -> ScoreLater:
    """How a route has a review scored off its request path: a task on the cpu queue where workers run;
    an app without them (tests, a program embedding the API) scores after the response is sent."""
    if state.workers:
        return send_score_review
    return lambda document_id: background.add_task(score_review_in, state.sessions, document_id)


def check_approved_data(document: Document, data: Any | None) -> None:
    """Raises ApiError 422 unless the data an approval would make ground truth (`data`, else the latest
    run's) is of bounded size (`review_data_too_large`) and valid for the document's type
    (`invalid_review_data`; the message names the paths, never the values)."""
    if data is not None and not within_bounds(data):
        raise ApiError(
            422,
            "review_data_too_large",
            f"review data is limited to {MAX_REVIEW_VALUES} values, {MAX_REVIEW_DEPTH} levels of nesting "
            f"and {MAX_REVIEW_TEXT} characters a string",
        )
    approved = data if data is not None else (document.runs[-1].data if document.runs else None)
    paths = sorted({issue.path or "/" for issue in schema_errors(document.doc_type, approved)})
    if paths:
        named = ", ".join(paths[:MAX_PATHS_NAMED]) + (", ..." if len(paths) > MAX_PATHS_NAMED else "")
        what = "the data" if data is not None else "the extracted data (send corrected data)"
        raise ApiError(
            422, "invalid_review_data", f"{what} does not fit the {document.doc_type} schema at {named}"
        )


def within_bounds(data: Any) -> bool:
    """Counts values (keys included) and depth, stopping at the first bound crossed: a cheap look at a
    payload of any size."""
    values = 0
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        values += 1
        if values > MAX_REVIEW_VALUES or depth > MAX_REVIEW_DEPTH:
            return False
        if isinstance(value, str) and len(value) > MAX_REVIEW_TEXT:
            return False
        if isinstance(value, dict):
            stack.extend((key, depth + 1) for key in value)
            stack.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
    return True


def approve(
    session: Session,
    document: Document | str,
    *,
    actor: str,
    data: Any | None,
    via: str,
    score_later: ScoreLater | None = None,
) -> Outcome:
    """Approves the document (as the caller loaded it in this session, else its id: loaded here);
    `data` is the reviewer's version of the extraction (None: as extracted). Data equal to the latest
    run's output is an approval as is. The score is computed here, from the run and review in hand, unless
    `score_later` is given (then `Outcome.score` is None)."""
    if isinstance(document, str):
        document = get_document_fresh(session, document)
    document_id = document.id
    run = document.runs[-1] if document.runs else None
    extracted = run.data if run is not None else None
    corrected = changed_pointers(extracted, data) if data is not None else []
    review_data = data if corrected else None
    review = record_review(
        session, document_id, actor=actor, action=ReviewAction.APPROVE, corrected_data=review_data
    )
    score = None
    if score_later is not None:
        score_later(document_id)
    elif run is not None:
        score = score_approval(session, run, review)
    record_audit(
        session,
        actor=actor,
        action="review.approve",
        document_id=document_id,
        detail={"corrected_fields": corrected, "via": via},
    )
    log.info("document %s approved via %s (%d fields corrected)", document_id, via, len(corrected))
    return Outcome(ReviewAction.APPROVE, corrected, score)


def reject(session: Session, document_id: str, *, actor: str, reason: str | None, via: str) -> Outcome:
    record_review(session, document_id, actor=actor, action=ReviewAction.REJECT, reason=reason or None)
    record_audit(session, actor=actor, action="review.reject", document_id=document_id, detail={"via": via})
    log.info("document %s rejected via %s", document_id, via)
    return Outcome(ReviewAction.REJECT, [], None)
