"""Document statuses and the transitions between them, applied as one conditional UPDATE so that two
racing workers cannot both move a document (the loser sees `IllegalTransition`)."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from storage.columns import utcnow
from storage.errors import IllegalTransition, NotFound
from storage.models import Document, DocumentStatus

S = DocumentStatus

ALLOWED_TRANSITIONS: dict[DocumentStatus, frozenset[DocumentStatus]] = {
    S.QUEUED: frozenset({S.PROCESSING, S.FAILED}),
    # processing -> processing: a task redelivered after its worker died; -> queued: a retry
    S.PROCESSING: frozenset({S.PROCESSING, S.QUEUED, S.DONE, S.NEEDS_REVIEW, S.FAILED}),
    S.DONE: frozenset({S.APPROVED, S.REJECTED}),
    S.NEEDS_REVIEW: frozenset({S.APPROVED, S.REJECTED}),
    # a failed document may be queued again by an operator
    S.FAILED: frozenset({S.QUEUED}),
    S.APPROVED: frozenset(),
    S.REJECTED: frozenset(),
}


def sources_of(target: DocumentStatus) -> list[str]:
    """The statuses from which `target` may be reached."""
    return [source.value for source, targets in ALLOWED_TRANSITIONS.items() if target in targets]


def transition(
    session: Session,
    document_id: str,
    target: DocumentStatus,
    *,
    error_code: str | None = None,
    error_message: str | None = None,
) -> None:
    """Moves the document to `target` inside the caller's transaction (no commit)."""
    values: dict[str, object] = {
        "status": target.value,
        "updated_at": utcnow(),
        # an error describes the failure only while the document is failed
        "error_code": error_code if target is S.FAILED else None,
        "error_message": error_message if target is S.FAILED else None,
    }
    if target is S.PROCESSING:
        values["attempts"] = Document.attempts + 1
    statement = (
        update(Document)
        .where(Document.id == document_id, Document.status.in_(sources_of(target)))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if session.execute(statement).rowcount == 0:
        raise _refusal(session, document_id, target)


def _refusal(session: Session, document_id: str, target: DocumentStatus) -> Exception:
    current = session.scalar(select(Document.status).where(Document.id == document_id))
    if current is None:
        return NotFound(f"no document {document_id}")
    return IllegalTransition(f"document {document_id} is {current}; it cannot become {target.value}")
