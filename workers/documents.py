"""Status moves a worker makes, tolerant of the races that redelivered and requeued tasks bring."""

from __future__ import annotations

from sqlalchemy.orm import Session

from storage.documents import get_document_fresh, set_status
from storage.errors import IllegalTransition
from storage.models import Document, DocumentStatus
from workers.callbacks import schedule_callback
from workers.outcomes import MAX_ATTEMPTS, TOO_MANY_ATTEMPTS

S = DocumentStatus


def start_attempt(session: Session, document_id: str, *, allowed: frozenset[S]) -> Document | None:
    """Moves the document to processing, counting an attempt. None when its status is not one of
    `allowed` (finished, or another delivery moved it first) or it ran out of attempts (then failed)."""
    document = get_document_fresh(session, document_id)
    if S(document.status) not in allowed:
        return None
    try:
        document = set_status(session, document_id, S.PROCESSING)
    except IllegalTransition:
        return None
    if gave_up(session, document):
        return None
    return document


def gave_up(session: Session, document: Document) -> bool:
    """True, and the document failed, when this attempt is one too many (a document that kills its worker
    every time must not be redelivered forever)."""
    if document.attempts <= MAX_ATTEMPTS:
        return False
    fail(session, document.id, TOO_MANY_ATTEMPTS, f"gave up after {MAX_ATTEMPTS} attempts")
    return True


def fail(session: Session, document_id: str, code: str, message: str) -> bool:
    """Marks the document failed with `code`; False if it had already left processing."""
    try:
        set_status(session, document_id, S.FAILED, error_code=code, error_message=message[:2000])
    except IllegalTransition:
        return False
    schedule_callback(session, document_id)
    return True
