"""Database rows to the API's JSON shapes (the contract's Document and Result)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from storage.models import Document, ExtractionRun


def preload(session: Session, documents: Sequence[Document]) -> None:
    """Loads the runs, scores and reviews of a page of documents in a few queries instead of a few per
    document; the rows already in the session get their collections filled."""
    ids = [document.id for document in documents]
    if not ids:
        return
    session.scalars(
        select(Document)
        .where(Document.id.in_(ids))
        .options(
            selectinload(Document.runs).selectinload(ExtractionRun.scores),
            selectinload(Document.reviews),
        )
    ).all()


def document_json(document: Document) -> dict[str, Any]:
    run = document.runs[-1] if document.runs else None
    review = document.reviews[-1] if document.reviews else None
    score = run.scores[-1] if run is not None and run.scores else None
    return {
        "id": document.id,
        "filename": document.filename,
        "doc_type": document.doc_type,
        "status": document.status,
        "pages": document.pages,
        "model": document.model,
        "created_at": document.created_at,
        "updated_at": document.updated_at,
        "result": _result(document, run) if run is not None else None,
        "error": (
            {"code": document.error_code, "message": document.error_message or document.error_code}
            if document.error_code
            else None
        ),
        "review": (
            {
                "action": review.action,
                "data": review.corrected_data,
                "reason": review.reason,
                "by": review.actor,
                "at": review.created_at,
            }
            if review is not None
            else None
        ),
        "scores": (
            {
                "ted_accuracy": score.ted_accuracy,
                "f1": score.f1,
                "perfect_match": score.perfect_match,
                "ground_truth_source": score.ground_truth_source,
            }
            if score is not None
            else None
        ),
    }


def _result(document: Document, run: ExtractionRun) -> dict[str, Any]:
    return {
        "doc_type": document.doc_type,
        "model": run.model_id,
        "data": run.data,
        "raw_output": run.raw_output,
        "valid": run.valid,
        "errors": run.errors or [],
        "checks": run.checks or [],
        "confidence": run.confidence or {},
        "locations": run.locations or {},
        "tiles": run.tiles,
        "tiles_per_page": run.tiles_per_page,
        "tokens": {"prompt": run.prompt_tokens, "generated": run.generated_tokens},
        "timings_ms": run.timings_ms or {},
    }
