"""Handing a stored document to the workers. The import is lazy: the API starts (and its tests run)
without the queue machinery loaded, and a failure to enqueue leaves the document `queued`, where an
operator or a sweep can pick it up again, rather than failing an upload whose bytes are safely stored."""

from __future__ import annotations

import logging

from api.deps import Enqueue

log = logging.getLogger(__name__)


def workers_enqueue(document_id: str, *, model: str | None, doc_type: str) -> None:
    enqueue = _find_enqueue()
    if enqueue is None:
        log.warning("workers.enqueue is not available; document %s stays queued", document_id)
        return
    enqueue(document_id, model=model, doc_type=doc_type)


def _find_enqueue() -> Enqueue | None:
    # `workers.enqueue` is the contract; `workers.dispatch` is where it is defined
    try:
        from workers import enqueue

        return enqueue
    except ImportError:
        pass
    try:
        from workers.dispatch import enqueue

        return enqueue
    except ImportError:
        return None


def enqueue_safely(enqueue: Enqueue, document_id: str, *, model: str | None, doc_type: str) -> None:
    try:
        enqueue(document_id, model=model, doc_type=doc_type)
    except Exception:
        # the broker may be down; the document is stored and stays queued
        log.exception("could not enqueue document %s; it stays queued", document_id)
