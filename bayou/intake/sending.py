"""Handing a stored document to the workers. A failure to enqueue leaves the document `queued`, where the
stuck-document sweep sends it again, rather than failing a take-in whose bytes are safely stored."""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

# enqueue(document_id, *, model, doc_type), as `workers.enqueue`
Enqueue = Callable[..., None]


def enqueue_safely(enqueue: Enqueue, document_id: str, *, model: str | None, doc_type: str) -> bool:
    """True when the document was handed to the broker."""
    try:
        enqueue(document_id, model=model, doc_type=doc_type)
    except Exception:
        # the broker may be down; the document is stored and stays queued
        log.exception("could not enqueue document %s; it stays queued", document_id)
        return False
    return True
