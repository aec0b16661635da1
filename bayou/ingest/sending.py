"""Handing recorded documents to the workers with `workers.enqueue`, the function the API calls too."""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

# enqueue(document_id, *, model, doc_type), as in api.deps.Enqueue
Enqueue = Callable[..., None]

NO_WORKERS = "the workers package cannot be imported"


def find_enqueue() -> Enqueue | None:
    """`workers.enqueue`, imported only now (it loads Celery); None when the workers are not installed."""
    try:
        from workers import enqueue
    except ImportError as exc:
        log.warning("%s (%s): documents will stay queued", NO_WORKERS, exc)
        return None
    return enqueue


class Sender:
    """Enqueues documents until the first failure. After that the rest are not tried: an unreachable
    broker costs each send its connection retries, and an unsent document is safe (it stays `queued`,
    and a worker's sweep of stuck documents sends it)."""

    def __init__(self, enqueue: Enqueue | None) -> None:
        self._enqueue = enqueue
        self.problem: str | None = NO_WORKERS if enqueue is None else None

    def send(self, document_id: str, *, model: str | None, doc_type: str) -> bool:
        """True when the document was handed to the broker."""
        if self._enqueue is None or self.problem is not None:
            return False
        try:
            self._enqueue(document_id, model=model, doc_type=doc_type)
        except Exception as exc:
            self.problem = f"enqueue failed ({type(exc).__name__}: {exc})"
            log.warning("could not enqueue document %s; it and the rest stay queued", document_id)
            return False
        return True
