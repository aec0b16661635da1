"""One settled file in: the upload's cheap checks, then blob and row, then the queue."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from api.errors import ApiError
from api.uploads import Limits, inspect, store_upload
from bayou.ingest.scan import FileStat
from bayou.ingest.sending import Sender
from bayou.ingest.tally import Outcome, Tally
from storage.blobs import BlobStore
from storage.documents import _find_duplicate as find_duplicate

log = logging.getLogger(__name__)

UNREADABLE = "unreadable"


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

    def record(self, path: Path, stat: FileStat) -> Outcome:
        """Checks, stores and enqueues one file; the outcome is also counted in `tally`."""
        try:
            outcome, code = self._store(path, stat)
        except ApiError as exc:
            outcome, code = Outcome.REFUSED, exc.code
        except OSError as exc:
            # gone, or not ours to read; file names can be personal, so the log gets the error type only
            log.info("file unreadable (%s)", type(exc).__name__)
            outcome, code = Outcome.REFUSED, UNREADABLE
        finally:
            # between files the session holds nothing: no open read transaction (which would keep
            # SQLite's WAL from being checkpointed during a long watch) and no rows piling up
            self._session.close()
        self.tally.count(outcome, code)
        return outcome

    def _store(self, path: Path, stat: FileStat) -> tuple[Outcome, None]:
        if stat.size > self._limits.max_bytes:
            # refused before reading, like the API's size check on the declared length
            raise ApiError(413, "too_large", f"the file is over {self._limits.max_bytes} bytes")
        with path.open("rb") as stream:
            # a re-run meets mostly recorded content: knowing it by its hash spares staging a copy
            if self._is_recorded(hashlib.file_digest(stream, "sha256").hexdigest()):
                return Outcome.DUPLICATE, None
            media_type = inspect(stream, self._limits)
            document, created = store_upload(
                self._session,
                self._blobs,
                source=stream,
                filename=path.name,
                media_type=media_type,
                doc_type=self._target.doc_type,
                model=self._target.model,
                limits=self._limits,
            )
        if not created:
            return Outcome.DUPLICATE, None
        if not self._sender.send(document.id, model=document.model, doc_type=document.doc_type):
            self.tally.unsent += 1
            self.tally.unsent_reason = self._sender.problem
        return Outcome.QUEUED, None

    def _is_recorded(self, sha256: str) -> bool:
        return find_duplicate(self._session, sha256, self._target.doc_type, self._target.model) is not None
