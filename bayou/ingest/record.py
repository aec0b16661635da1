"""One settled file in: the intake's cheap checks, then blob and row, then the queue."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.orm import Session

from bayou.ingest.sending import Sender
from bayou.ingest.tally import Outcome, Tally
from bayou.intake import Limits, take_file
from bayou.intake.folders import Candidate
from extractor.errors import InputError
from storage.blobs import BlobStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    """What every file of the run becomes: its document type and the model that will serve it."""

    doc_type: str
    model: str


class Recorder:
    def __init__(
        self,
        session: Session,
        blobs: BlobStore,
        *,
        target: Target,
        limits: Limits,
        sender: Sender,
        tally: Tally,
    ) -> None:
        self._session = session
        self._blobs = blobs
        self._target = target
        self._limits = limits
        self._sender = sender
        self.tally = tally

    def record(self, candidate: Candidate) -> Outcome:
        """Checks, stores and enqueues one file; the outcome is also counted in `tally`."""
        try:
            outcome, code = self._store(candidate)
        except InputError as exc:
            outcome, code = Outcome.REFUSED, exc.code
        finally:
            # between files the session holds nothing: no open read transaction (which would keep
            # SQLite's WAL from being checkpointed during a long watch) and no rows piling up
            self._session.close()
        self.tally.count(outcome, code)
        return outcome

    def _store(self, candidate: Candidate) -> tuple[Outcome, None]:
        # as a server-side batch takes a file: only the one the listing checked inside the folder, not
        # what its path leads to by now (a file or a directory above it swapped since is file_changed)
        document, created = take_file(
            self._session,
            self._blobs,
            candidate.path,
            doc_type=self._target.doc_type,
            model=self._target.model,
            limits=self._limits,
            expected=candidate.identity,
        )
        if not created:
            return Outcome.DUPLICATE, None
        if not self._sender.send(document.id, model=document.model, doc_type=document.doc_type):
            self.tally.unsent += 1
            self.tally.unsent_reason = self._sender.problem
        return Outcome.QUEUED, None
