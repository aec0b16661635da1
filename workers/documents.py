"""Status moves a worker makes, tolerant of the races that redelivered and requeued tasks bring."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.documents import get_document_fresh, set_status
from storage.errors import IllegalTransition, NotFound
from storage.models import Document, DocumentStatus
from workers.callbacks import schedule_callback
from workers.outcomes import MAX_ATTEMPTS, TOO_MANY_ATTEMPTS, Outcome

log = logging.getLogger(__name__)

S = DocumentStatus


def start_attempt(session: Session, document_id: str, *, allowed: frozenset[S]) -> Document | None:
    """Moves the document to processing, counting an attempt. None when its status is not one of
    `allowed` (finished, or another delivery moved it first), it ran out of attempts (then failed), or
    it is gone (deleted through the API while its message waited)."""
    try:
        document = get_document_fresh(session, document_id)
        if S(document.status) not in allowed:
            return None
        document = set_status(session, document_id, S.PROCESSING)
    except (IllegalTransition, NotFound):
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
    """Marks the document failed with `code`; False if it had already left processing or is gone."""
    try:
        set_status(session, document_id, S.FAILED, error_code=code, error_message=message[:2000])
    except (IllegalTransition, NotFound):
        return False
    schedule_callback(session, document_id)
    return True


def deleted(session: Session, document_id: str) -> bool:
    """True when the document no longer exists: a user deleted it while a task worked on it, so the
    task's writes (pages, a run) fail on the missing row and are dropped, not errors of the worker."""
    session.rollback()
    return session.scalar(select(Document.id).where(Document.id == document_id)) is None


def skipped_if_deleted(session: Session, document_id: str, error: Exception, what: str) -> Outcome:
    """For a task's write that failed with `error`: SKIPPED (logged, `what` saying what is dropped) when
    the document was deleted meanwhile, else `error` raised again, for it is then the worker's own."""
    if not deleted(session, document_id):
        raise error
    log.info("document %s was deleted %s", document_id, what)
    return Outcome.SKIPPED
