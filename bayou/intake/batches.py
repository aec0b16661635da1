"""Walking a server-side batch: every candidate file of its folder taken once, the counts kept on its
row as the walk goes, `done` at the end.

A walk can be cut short (its worker killed) and run again from the start: the content dedupe makes
re-taking a file harmless, and the counts are rebuilt from nothing. A document this batch created in an
earlier, interrupted walk counts as created (it is not sent again: if its message went down with the
worker, the stuck-document sweep re-sends it); met a second time in the same walk, it is a duplicate.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from bayou.engines import model_name
from bayou.intake.folders import candidate_files, resolve_folder
from bayou.intake.limits import Limits
from bayou.intake.sending import Enqueue, enqueue_safely
from bayou.intake.storing import Taken, take_file
from bayou.settings import Settings
from extractor.errors import InputError
from storage.blobs import BlobStore
from storage.columns import utcnow
from storage.models import Batch, BatchStatus

log = logging.getLogger(__name__)


NO_ROOT = "no_root"
# progress reaches the row at most this often (and at the end): often enough for a client polling it,
# seldom enough not to double the writes of a folder of small files
PROGRESS_EVERY_S = 1.0


@dataclass
class BatchTally:
    total: int = 0
    created: int = 0
    duplicates: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    # documents counted as created in this walk: meeting one again is a duplicate
    seen: set[str] = field(default_factory=set)

    def columns(self) -> dict[str, object]:
        return {
            "total_files": self.total,
            "created_count": self.created,
            "duplicate_count": self.duplicates,
            "refused_count": sum(self.refused.values()),
            "refused_reasons": dict(sorted(self.refused.items())),
        }


@dataclass(frozen=True)
class BatchJob:
    """What a walk needs besides the batch row: where to store, the settings (caps, default models), and
    the queue."""

    sessions: sessionmaker[Session]
    blobs: BlobStore
    settings: Settings
    enqueue: Enqueue

    @property
    def limits(self) -> Limits:
        return Limits.from_settings(self.settings)

    def model(self, doc_type: str) -> str:
        # the type's default, stored as an upload naming no model is: the same file is one document
        return model_name(None, doc_type, self.settings)


def run_batch(job: BatchJob, batch_id: str, *, clock: Callable[[], float] = time.monotonic) -> str | None:
    """Walks the batch if it is running; returns its final status, or None when there was nothing to do
    (no such batch, or finished already: a redelivered message)."""
    with job.sessions() as session:
        batch = session.get(Batch, batch_id)
        if batch is None or batch.status != BatchStatus.RUNNING:
            return None
        folder, doc_type, recursive, root = batch.folder, batch.doc_type, batch.recursive, batch.root
    if root is None:
        return _fail(job, batch_id, InputError("the batch has no root recorded", code=NO_ROOT))
    try:
        # again, not only in the request: the folder may have been swapped for a link since
        target = resolve_folder(Path(root), folder)
    except InputError as exc:
        return _fail(job, batch_id, exc)
    tally = BatchTally()
    model, limits = job.model(doc_type), job.limits
    last_flush = clock()
    with job.sessions() as session:
        for path in candidate_files(target, Path(root), recursive=recursive):
            _take(job, session, batch_id, path, doc_type, model, limits, tally)
            if clock() - last_flush >= PROGRESS_EVERY_S:
                _record(session, batch_id, tally)
                last_flush = clock()
        _record(session, batch_id, tally, status=BatchStatus.DONE)
    log.info(
        "batch %s: %d files, %d new, %d duplicates, %d refused",
        batch_id,
        tally.total,
        tally.created,
        tally.duplicates,
        sum(tally.refused.values()),
    )
    return BatchStatus.DONE.value


def _take(
    job: BatchJob,
    session: Session,
    batch_id: str,
    path: Path,
    doc_type: str,
    model: str,
    limits: Limits,
    tally: BatchTally,
) -> None:
    tally.total += 1
    try:
        taken = take_file(
            session, job.blobs, path, doc_type=doc_type, model=model, limits=limits, batch_id=batch_id
        )
    except InputError as exc:
        # file names can be personal (a licence holder's name): the log gets codes only
        log.info("batch %s: file refused (%s)", batch_id, exc.code)
        tally.refused[exc.code] += 1
        return
    finally:
        # between files the session holds nothing: no read transaction keeping SQLite's WAL growing
        session.close()
    if _is_new(taken, batch_id, tally):
        tally.created += 1
        tally.seen.add(taken.document.id)
        if taken.created:
            # one from an interrupted walk is not sent again: its message may still be queued (two would
            # run the model twice), and the stuck-document sweep re-sends it if not
            enqueue_safely(job.enqueue, taken.document.id, model=taken.document.model, doc_type=doc_type)
    else:
        tally.duplicates += 1


def _is_new(taken: Taken, batch_id: str, tally: BatchTally) -> bool:
    """Created now, or by an earlier walk of this batch that did not finish."""
    if taken.created:
        return True
    return taken.document.batch_id == batch_id and taken.document.id not in tally.seen


def _record(session: Session, batch_id: str, tally: BatchTally, *, status: BatchStatus | None = None) -> None:
    values = tally.columns() | {"updated_at": utcnow()}
    if status is not None:
        values["status"] = status.value
    # only while running: a twin walk (a message delivered twice) that finished first has the last word
    running = Batch.status == BatchStatus.RUNNING.value
    session.execute(update(Batch).where(Batch.id == batch_id, running).values(**values))
    session.commit()


def _fail(job: BatchJob, batch_id: str, error: InputError) -> str:
    log.warning("batch %s failed (%s)", batch_id, error.code)
    with job.sessions() as session:
        mark_failed(session, batch_id, error.code, error.message)
    return BatchStatus.FAILED.value


def mark_failed(session: Session, batch_id: str, code: str, message: str) -> None:
    """The batch stops with `code`; what it took stays taken (and counted as far as the row says)."""
    session.execute(
        update(Batch)
        .where(Batch.id == batch_id, Batch.status == BatchStatus.RUNNING.value)
        .values(
            status=BatchStatus.FAILED.value,
            error_code=code,
            error_message=message[:2000],
            updated_at=utcnow(),
        )
    )
    session.commit()
