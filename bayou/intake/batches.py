"""Walking a server-side batch: every candidate file of its folder taken once, in the folder's order
(`candidate_files`), the counts kept on its row as the walk goes, `done` at the end.

A walk proceeds in slices of about WALK_SLICE_S, timed from its first file (the listing that finds it can
be long: a big folder is listed again by every slice, so a slice lasts five times that where longer, up to
WALK_SLICE_MAX_S): then it records a checkpoint and hands the rest to a message of its own
(`continue_walk`, a cpu-queue message in the workers), so a worker that runs one task at a time runs the
documents' tasks queued meanwhile before the walk goes on. Every progress record is a checkpoint: the
counts, the cursor (the relative path of the last file taken, percent-encoded: `encode_position`) and the
checkpoint number moved on by one, written together, and only by the walk that started from the number the
row holds (compare-and-swap): a second walk of the same batch (a message delivered twice, or sent again by
the stalled-batch sweep) loses at its first record and stops, and a message whose number is not the row's
does nothing at all. Messages carry the number, never the path: a file name can be personal, and a task's
arguments show in Flower and in a failed publish's log. A walk cut short (its worker killed) resumes from
the last checkpoint; the files it took after it are met again, which the content dedupe makes harmless
(found, not stored again, not sent again: if a message went down with the worker, the stuck-document sweep
re-sends it).

Counts: `total` is the files met (each once, in the folder's order), `refused` those refused, by code;
`created` is the documents that exist with this batch's id, counted in the database at each checkpoint (exact
whatever crashed or ran twice), and `duplicates` the rest: files whose content was a document already,
from an upload, another batch, or an earlier file of this one. While a resumed walk catches up with files
an interrupted one took after its last checkpoint, `created` is capped at the files counted so far.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from bayou.engines import model_name
from bayou.intake.folders import (
    Candidate,
    candidate_files,
    decode_position,
    encode_position,
    resolve_folder,
)
from bayou.intake.limits import Limits
from bayou.intake.sending import Enqueue, enqueue_safely
from bayou.intake.storing import take_file
from bayou.settings import Settings
from extractor.errors import InputError
from storage.blobs import BlobStore
from storage.columns import utcnow
from storage.models import Batch, BatchStatus, Document

log = logging.getLogger(__name__)


NO_ROOT = "no_root"
# progress reaches the row at most this often (and at the end): often enough for a client polling it,
# seldom enough not to double the writes of a folder of small files
PROGRESS_EVERY_S = 1.0
# a walk with somewhere to hand its rest to yields after this long: a one-task-at-a-time worker (the
# embedded one) runs what was queued meanwhile, a document's rasterising among them, before going on
WALK_SLICE_S = 1.0
# ... and after this many times the time its first file took to come (listing and sorting the folder, again
# at each slice), so a big folder (or a slow share) does not end up with one file per slice
SLICE_PER_LISTING = 5
# ... but never longer than this, so the listing and the slice stay well inside a walk task's time limit
# (workers.batching.WALK_LIMITS_S, 300 s) however slow the listing
WALK_SLICE_MAX_S = 60.0

# continue_walk(batch_id, checkpoint): has the walk go on from the batch's checkpoint number `checkpoint`
# (the path stays in the database), in a later task; raises when the message cannot be sent (as
# `workers.batching.send_ingest_batch` does)
ContinueWalk = Callable[[str, int], None]


@dataclass
class BatchTally:
    """What the walk counts itself; created and duplicates are worked out at each checkpoint."""

    total: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    cursor: str | None = None  # the relative path of the last file met, as walked (str, maybe not UTF-8)
    created: int = 0  # as of the last checkpoint (for the log)

    @property
    def refused_count(self) -> int:
        return sum(self.refused.values())

    def count_created(self, documents: int) -> None:
        """`created` from the documents that carry the batch's id."""
        # capped: files an interrupted walk took after its last checkpoint may not be met again yet
        self.created = min(documents, self.total - self.refused_count)

    def columns(self) -> dict[str, object]:
        return {
            "total_files": self.total,
            "created_count": self.created,
            "duplicate_count": self.total - self.refused_count - self.created,
            "refused_count": self.refused_count,
            "refused_reasons": dict(sorted(self.refused.items())),
            # ASCII: a name that is not UTF-8 (surrogate escapes) would not encode for the database
            "cursor": None if self.cursor is None else encode_position(self.cursor),
        }


@dataclass(frozen=True)
class BatchJob:
    """What a walk needs besides the batch row: where to store, the settings (caps, default models), the
    queue, and where to hand the rest of a walk after a slice (None: walk to the end in one go)."""

    sessions: sessionmaker[Session]
    blobs: BlobStore
    settings: Settings
    enqueue: Enqueue
    continue_walk: ContinueWalk | None = None

    @property
    def limits(self) -> Limits:
        return Limits.from_settings(self.settings)

    def model(self, doc_type: str) -> str:
        # the type's default, stored as an upload naming no model is: the same file is one document
        return model_name(None, doc_type, self.settings)


@dataclass(frozen=True)
class Walk:
    """One run of a batch's walk: from the row's checkpoint when it began, after its cursor."""

    batch_id: str
    target: Path
    root: Path
    doc_type: str
    recursive: bool
    start: str | None  # the cursor, decoded: the position the walk resumes after


@dataclass
class Checkpoints:
    """A walk's progress records on its batch row, each a compare-and-swap on the checkpoint number."""

    batch_id: str
    seen: int  # the row's checkpoint number, as far as this walk knows
    counted: int  # the files it counts as of that checkpoint

    def behind(self, tally: BatchTally) -> bool:
        """Whether files were met since the last record."""
        return tally.total != self.counted

    def record(self, session: Session, tally: BatchTally, *, status: BatchStatus | None = None) -> bool:
        """The tally on the row as the next checkpoint; False (nothing written) when another walk of the
        batch recorded one first, or the batch ended."""
        if not _checkpoint(session, self.batch_id, self.seen, tally, status=status):
            return False
        self.seen, self.counted = self.seen + 1, tally.total
        return True


class SliceTimer:
    """When a slice is over: timed from its first file, not from the start, because reaching that file
    means listing the folder down to the cursor again, which takes long in a big folder or on a slow share;
    and then it lasts WALK_SLICE_S, or SLICE_PER_LISTING times as long as that took if longer (so most of a
    slice takes files), WALK_SLICE_MAX_S at most."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.started = clock()
        self.first: float | None = None
        self.length = WALK_SLICE_S

    @property
    def begun(self) -> bool:
        return self.first is not None

    def begin(self) -> float:
        """The first file is at hand: the slice starts now (returned)."""
        self.first = now = self.clock()
        listing = now - self.started
        self.length = max(WALK_SLICE_S, min(SLICE_PER_LISTING * listing, WALK_SLICE_MAX_S))
        return now

    def over(self) -> bool:
        return self.first is not None and self.clock() - self.first >= self.length


def run_batch(
    job: BatchJob,
    batch_id: str,
    checkpoint: int = 0,
    *,
    clock: Callable[[], float] = time.monotonic,
    from_checkpoint: bool = False,
) -> str | None:
    """Walks the batch on from checkpoint number `checkpoint` (0: from the start) if it is running and
    its row's checkpoint is that one (with `from_checkpoint`, from whatever checkpoint the row holds: the
    retry of a walk that met a transient fault, whose own checkpoints may have moved the row on since its
    message was sent); returns `done`, `failed`, `running` (a slice ended, the rest handed to
    `job.continue_walk`), or None when there was nothing to do: no such batch, finished already, or
    another walk got ahead (a stale or duplicate message, or a twin that recorded progress first)."""
    with job.sessions() as session:
        batch = session.get(Batch, batch_id)
        if batch is None or batch.status != BatchStatus.RUNNING:
            return None
        if not from_checkpoint and batch.checkpoint != checkpoint:
            return None
        tally = _tally_at(batch)
        checkpoints = Checkpoints(batch_id, batch.checkpoint, tally.total)
        folder, doc_type, recursive, root = batch.folder, batch.doc_type, batch.recursive, batch.root
    if root is None:
        return _fail(job, batch_id, InputError("the batch has no root recorded", code=NO_ROOT))
    try:
        # again, not only in the request (and at each slice): the folder may have been swapped for a link
        target = resolve_folder(Path(root), folder)
    except InputError as exc:
        return _fail(job, batch_id, exc)
    walk = Walk(batch_id, target, Path(root), doc_type, recursive, tally.cursor)
    return _walk(job, walk, tally, checkpoints, clock)


def _tally_at(batch: Batch) -> BatchTally:
    # the row's counts are those as of its checkpoint (written together); from the start (checkpoint 0,
    # a batch from before checkpoints included), they are rebuilt
    if batch.checkpoint == 0:
        return BatchTally()
    cursor = None if batch.cursor is None else decode_position(batch.cursor)
    return BatchTally(batch.total_files, Counter(batch.refused_reasons or {}), cursor, batch.created_count)


def _walk(
    job: BatchJob, walk: Walk, tally: BatchTally, checkpoints: Checkpoints, clock: Callable[[], float]
) -> str | None:
    model, limits = job.model(walk.doc_type), job.limits
    timer = SliceTimer(clock)
    last_record = timer.started
    files = candidate_files(walk.target, walk.root, recursive=walk.recursive, after=walk.start)
    with job.sessions() as session:
        for candidate in files:
            if not timer.begun:
                # progress too is timed from here: the listing is no progress to record
                last_record = timer.begin()
            # looked at once the next file is known, so a slice ends only with something left to hand on;
            # and after a file at least, whatever the clock says: each message moves the walk on
            elif _slice_over(job, timer):
                return _hand_over(job, session, checkpoints, tally)
            _take(job, session, walk.batch_id, candidate, walk.doc_type, model, limits, tally)
            tally.cursor = candidate.relative
            if clock() - last_record >= PROGRESS_EVERY_S:
                if not checkpoints.record(session, tally):
                    return _lost(walk.batch_id)
                last_record = clock()
        if not checkpoints.record(session, tally, status=BatchStatus.DONE):
            return _lost(walk.batch_id)
    log.info(
        "batch %s: %d files, %d new, %d duplicates, %d refused",
        walk.batch_id,
        tally.total,
        tally.created,
        tally.total - tally.created - tally.refused_count,
        tally.refused_count,
    )
    return BatchStatus.DONE.value


def _slice_over(job: BatchJob, timer: SliceTimer) -> bool:
    # with nowhere to hand the rest to (a walk in the API's process), there is one slice: the whole walk
    return job.continue_walk is not None and timer.over()


def _hand_over(job: BatchJob, session: Session, checkpoints: Checkpoints, tally: BatchTally) -> str | None:
    """End of a slice: the checkpoint, then the message that goes on from it (its number, not its path)."""
    assert job.continue_walk is not None  # as _slice_over has it
    batch_id = checkpoints.batch_id
    # recorded just now (after the slice's last file) or not: the row must say where the next walk starts
    if checkpoints.behind(tally) and not checkpoints.record(session, tally):
        return _lost(batch_id)
    try:
        job.continue_walk(batch_id, checkpoints.seen)
    except Exception:
        # the broker may be down: the batch stays running at its checkpoint, and the stalled-batch sweep
        # sends the walk on from there
        log.exception("could not send batch %s on; the stalled-batch sweep will", batch_id)
    return BatchStatus.RUNNING.value


def _lost(batch_id: str) -> None:
    log.info("batch %s: another walk got ahead or the batch ended; this one stops", batch_id)
    return None


def _take(
    job: BatchJob,
    session: Session,
    batch_id: str,
    candidate: Candidate,
    doc_type: str,
    model: str,
    limits: Limits,
    tally: BatchTally,
) -> None:
    tally.total += 1
    try:
        # only the file that was checked inside the root, not what its path leads to by now
        taken = take_file(
            session,
            job.blobs,
            candidate.path,
            doc_type=doc_type,
            model=model,
            limits=limits,
            batch_id=batch_id,
            expected=candidate.identity,
        )
    except InputError as exc:
        # file names can be personal (a licence holder's name): the log gets codes only
        log.info("batch %s: file refused (%s)", batch_id, exc.code)
        tally.refused[exc.code] += 1
        return
    finally:
        # between files the session holds nothing: no read transaction keeping SQLite's WAL growing
        session.close()
    if taken.created:
        # one found instead (from an interrupted walk, or a twin's) is not sent again: its message may
        # still be queued (two would run the model twice), and the stuck-document sweep re-sends it if not
        enqueue_safely(job.enqueue, taken.document.id, model=taken.document.model, doc_type=doc_type)


def _checkpoint(
    session: Session,
    batch_id: str,
    seen: int,
    tally: BatchTally,
    *,
    status: BatchStatus | None = None,
) -> bool:
    """Records the walk's counts and cursor (and `status`) as checkpoint `seen` + 1 if the batch is running
    and its checkpoint is still `seen`, where this walk last left it; False, nothing written, when not:
    another walk of the batch recorded progress first, or the batch ended."""
    # counted, not tallied: exact whatever crashed or ran twice (documents.batch_id is indexed)
    created = select(func.count()).select_from(Document).where(Document.batch_id == batch_id)
    tally.count_created(session.scalar(created) or 0)
    values = tally.columns() | {"checkpoint": seen + 1, "updated_at": utcnow()}
    if status is not None:
        values["status"] = status.value
    written = session.execute(
        update(Batch)
        .where(
            Batch.id == batch_id,
            Batch.status == BatchStatus.RUNNING.value,
            Batch.checkpoint == seen,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount
    session.commit()
    return written == 1


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
