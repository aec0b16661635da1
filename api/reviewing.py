"""What a reviewer's decision does, whether it comes from the review UI or the REST API: the review and the
status it implies (`storage.documents.record_review`), a score of the latest run against the reviewed data
(`extractor.scoring`, ground truth source "reviewed"), and an audit entry naming the changed fields, never
their values (driver's licences are personal data)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from api.review.forms import changed_pointers
from extractor.scoring import field_f1, perfect_match, ted_accuracy
from storage.documents import get_document_fresh, record_audit, record_review
from storage.models import ExtractionRun, GroundTruthSource, ReviewAction, Score

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    action: ReviewAction
    corrected: list[str]
    score: Score | None


def approve(session: Session, document_id: str, *, actor: str, data: Any | None, via: str) -> Outcome:
    """Approves the document; `data` is the reviewer's version of the extraction (None: as extracted).
    Data equal to the latest run's output is an approval as is."""
    run = _latest_run(session, document_id)
    extracted = run.data if run is not None else None
    corrected = changed_pointers(extracted, data) if data is not None else []
    review_data = data if corrected else None
    record_review(session, document_id, actor=actor, action=ReviewAction.APPROVE, corrected_data=review_data)
    score = _score(session, run, data if corrected else extracted) if run is not None else None
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


def _latest_run(session: Session, document_id: str) -> ExtractionRun | None:
    document = get_document_fresh(session, document_id)
    return document.runs[-1] if document.runs else None


def _score(session: Session, run: ExtractionRun, ground_truth: Any) -> Score | None:
    if not isinstance(ground_truth, dict):
        return None
    prediction = run.data
    score = Score(
        run_id=run.id,
        ground_truth_source=GroundTruthSource.REVIEWED.value,
        ted_accuracy=ted_accuracy(prediction, ground_truth),
        f1=field_f1([prediction], [ground_truth]),
        perfect_match=perfect_match(prediction, ground_truth),
    )
    try:
        session.add(score)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return score
