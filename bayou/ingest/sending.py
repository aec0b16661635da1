"""Handing recorded documents to the workers with `workers.enqueue`, the function the API calls too."""

from __future__ import annotations

import logging

from bayou.intake.sending import Enqueue

log = logging.getLogger(__name__)


class Sender:
    """Enqueues documents until the first failure. After that the rest are not tried: an unreachable
    broker costs each send its connection retries, and an unsent document is safe (it stays `queued`,
    and a worker's sweep of stuck documents sends it)."""

    def __init__(self, enqueue: Enqueue) -> None:
        self._enqueue = enqueue
        self.problem: str | None = None

    def send(self, document_id: str, *, model: str | None, doc_type: str) -> bool:
        """True when the document was handed to the broker."""
        if self.problem is not None:
            return False
        try:
            self._enqueue(document_id, model=model, doc_type=doc_type)
        except Exception as exc:
            self.problem = f"enqueue failed ({type(exc).__name__}: {exc})"
            log.warning("could not enqueue document %s; it and the rest stay queued", document_id)
            return False
        return True
