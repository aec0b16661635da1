"""Documents whose message was lost (a worker killed with it; the embedded broker never redelivers a
taken message) sit in queued or processing; this sends them again. Over-sending is safe, every task
being idempotent, but not free: a document merely waiting behind a long backlog is left alone while its
own message still waits in its queue. The sweep reads each queue's waiting messages once (a message names
its document first among its arguments) and re-sends the stale documents that have none there, so a lost
message is made good even under a load that never lets the queue empty. Where it cannot tell (a message
it cannot read, more than `workers.broker.MAX_WAITING_READ` waiting, a broker whose queue cannot be read
without taking from it) it leaves that queue's documents alone while the queue holds anything.

Past `stuck_after_s`, messages a worker has taken but not acknowledged do not count: such a message is far
more likely a dead worker's (Redis gives it back only after its visibility timeout, two hours; the embedded
broker never) than one a live worker has held for half an hour, and re-sending the latter costs at most a
duplicate that stores nothing. Before that, from LOST_AFTER_S, Redis's unacknowledged set is read too: a
document whose message is in neither place is re-sent at once (see LOST_AFTER_S)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from celery import Celery
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from storage.columns import utcnow
from storage.models import Document, DocumentStatus
from workers.broker import held_document_ids, waiting_document_ids
from workers.default_app import app_or_default
from workers.dispatch import send_extract, send_rasterize
from workers.queues import CPU_QUEUE, extract_queue
from workers.runtime import Runtime, get_runtime

log = logging.getLogger(__name__)

S = DocumentStatus
# Redis shows which messages workers hold (its unacked set): a document untouched this long whose message
# is neither waiting nor held was lost between the two (kombu takes a message and records it as held in
# two round trips; a broker restart between them loses it) or never sent (the broker down at upload), and
# is re-sent without waiting for stuck_after_s. Longer than a rasterisation takes from storing its pages to
# sending the extraction (a send waits out a broker restart for ~30 s).
LOST_AFTER_S = 5 * 60


def requeue_stuck(
    *, older_than_s: float | None = None, app: Celery | None = None, runtime: Runtime | None = None
) -> list[str]:
    """Re-sends every document untouched in queued or processing for `older_than_s` (default: the
    `stuck_after_s` setting) whose message does not wait in its next queue, and, sooner (LOST_AFTER_S),
    one whose message the broker shows neither waiting nor held by a worker; returns their ids."""
    app = app_or_default(app)
    runtime = runtime or get_runtime()
    if older_than_s is None:
        older_than_s = runtime.settings.stuck_after_s
    cutoff = utcnow() - timedelta(seconds=older_than_s)
    lost_cutoff = utcnow() - timedelta(seconds=min(older_than_s, LOST_AFTER_S))
    # per queue, read once a sweep (what waits before what is held: a message moving from one to the
    # other is then seen in one of them): the documents of its messages, None when it cannot tell
    waiting: dict[str, set[str] | None] = {}
    held: dict[str, set[str] | None] = {}
    resent = []
    with runtime.sessions() as session:
        long_stale = {document.id for document in _stale(session, cutoff)}
        for document in _stale(session, lost_cutoff):
            queue = _next_queue(document)
            if queue not in waiting:
                waiting[queue] = waiting_document_ids(app, runtime.settings, queue)
            if document.id in long_stale:
                leave, since = _may_wait(document.id, waiting[queue]), cutoff
            else:
                if queue not in held:
                    held[queue] = held_document_ids(app, runtime.settings, queue)
                leave, since = not _nowhere(document.id, waiting[queue], held[queue]), lost_cutoff
            if leave or not _claim(session, document, since):
                continue  # its message waits (or may), or another sweep or a worker touched it meanwhile
            _resend(document, queue, app)
            resent.append(document.id)
    if resent:
        log.warning("re-sent %d stuck document(s): %s", len(resent), ", ".join(resent))
    return resent


def _nowhere(document_id: str, waiting: set[str] | None, held: set[str] | None) -> bool:
    # only where the broker can say both (Redis): the embedded broker cannot say who holds a message
    return waiting is not None and held is not None and document_id not in waiting | held


def _may_wait(document_id: str, waiting: set[str] | None) -> bool:
    # not knowing what waits (None), the document's message may be any of it: an empty queue was read
    # as an empty set, so None always means a backlog
    return waiting is None or document_id in waiting


def _stale(session: Session, cutoff: datetime) -> list[Document]:
    statement = select(Document).where(
        Document.status.in_([S.QUEUED, S.PROCESSING]), Document.updated_at <= cutoff
    )
    return list(session.scalars(statement))


def _rasterized(document: Document) -> bool:
    # pages stored while processing: rasterising finished, only the extraction was lost
    return document.status == S.PROCESSING and bool(document.pages)


def _next_queue(document: Document) -> str:
    return extract_queue(document.model, document.doc_type) if _rasterized(document) else CPU_QUEUE


def _claim(session: Session, document: Document, cutoff: datetime) -> bool:
    # moving updated_at on keeps the next sweep from re-sending it before this delivery had its chance
    claimed = session.execute(
        update(Document)
        .where(Document.id == document.id, Document.status == document.status, Document.updated_at <= cutoff)
        .values(updated_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    session.commit()
    return claimed == 1


def _resend(document: Document, queue: str, app: Celery) -> None:
    if _rasterized(document):
        send_extract(document.id, queue, app=app)
    else:
        send_rasterize(document.id, extract_queue(document.model, document.doc_type), app=app)
