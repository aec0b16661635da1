"""Handing a stored document to the workers. A failure to enqueue leaves the document `queued`, where an
operator or the stuck-document sweep picks it up again, rather than failing an upload whose bytes are
safely stored."""

from __future__ import annotations

import logging

from api.deps import Enqueue

log = logging.getLogger(__name__)


def enqueue_safely(enqueue: Enqueue, document_id: str, *, model: str | None, doc_type: str) -> None:
    try:
        enqueue(document_id, model=model, doc_type=doc_type)
    except Exception:
        # the broker may be down; the document is stored and stays queued
        log.exception("could not enqueue document %s; it stays queued", document_id)
