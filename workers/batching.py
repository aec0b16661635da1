"""Server-side batches in the background: the task that walks a batch's folder a slice at a time (a thin
shell around `bayou.intake.batches.run_batch`), the message that starts it or goes on from a checkpoint,
and the sweep that sends on a batch whose walk died with its worker (the embedded broker never
redelivers; a message may also never have been sent, the broker being down at the time). A message
carries the batch's checkpoint number, never a file's path (task arguments show in Flower and in logs; a
file name can be personal); one whose number is not its batch's (stale, or sent twice) does nothing, so
the sweep may send whatever the queue holds."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session

from bayou.intake.batches import BatchJob, mark_failed, run_batch
from storage.columns import utcnow
from storage.models import Batch, BatchStatus
from workers.default_app import app_or_default
from workers.dispatch import enqueue
from workers.names import INGEST_BATCH_TASK, RESUME_BATCHES_TASK
from workers.outcomes import INTERNAL_ERROR, TIMED_OUT
from workers.queues import CPU_QUEUE
from workers.runtime import Runtime, get_runtime
from workers.transient import TRANSIENT_ERRORS, RetryingTask, register_task, was_redelivered

log = logging.getLogger(__name__)

# a walk records progress every second or so; this long without any, it is gone
BATCH_STALLED_AFTER_S = 10 * 60
RESUME_EVERY_S = 5 * 60
# soft: the walk fails its batch `timeout`; hard: the process is killed (the batch stays running, and the
# stalled-batch sweep sends it on). A slice lasts about a second (a minute at most, on a folder slow to
# list); one past these hangs, on a stale network mount say, and would tie up a cpu worker for good (and
# the sweep's twin of it another, every BATCH_STALLED_AFTER_S)
WALK_LIMITS_S = (300, 330)


class BatchTask(RetryingTask):
    """A failure that is not transient fails the batch: run again, it would fail the same way; past the
    soft time limit, with `timeout`."""

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        if isinstance(exc, TRANSIENT_ERRORS) or not args:
            return
        code = TIMED_OUT if isinstance(exc, SoftTimeLimitExceeded) else INTERNAL_ERROR
        try:
            with get_runtime().sessions() as session:
                mark_failed(session, args[0], code, failure_message(exc))
        except Exception:  # the database may be the problem; Celery logs the failure anyway
            log.exception("could not mark batch %s failed", args[0])


def failure_message(exc: BaseException) -> str:
    """What the batch's error says: the exception, without the file names an OSError carries (its
    `str` names them; the batch's error is shown to API clients, and a file name can be personal)."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return f"{type(exc).__name__}: {exc}"


def ingest_batch_task(self: Task, batch_id: str, checkpoint: int = 0) -> str | None:
    # `checkpoint`: the batch's checkpoint number the walk goes on from (a continuation or a resumed walk);
    # the batch id alone is 0, the start (the message `POST /v1/batches` sends). A retry (after a transient
    # fault) or a redelivery (Redis gives back the message of a worker that died) carries the number its
    # first try started from, which that try's checkpoints may have moved on: it goes on from the row's
    return run_batch(
        batch_job(get_runtime(), self.app), batch_id, checkpoint, from_checkpoint=_tried_before(self.request)
    )


def _tried_before(request: Any) -> bool:
    return bool(request.retries) or was_redelivered(request)


def batch_job(runtime: Runtime, app: Celery) -> BatchJob:
    return BatchJob(
        runtime.sessions,
        runtime.blobs,
        runtime.settings,
        enqueue=partial(enqueue, app=app),
        continue_walk=partial(send_ingest_batch, app=app),
    )


def send_ingest_batch(batch_id: str, checkpoint: int = 0, *, app: Celery | None = None) -> None:
    """Has a cpu worker walk the batch, from the start (checkpoint 0) or on from checkpoint number
    `checkpoint`. Raises kombu's OperationalError when the broker cannot be reached (the batch stays
    running, and `resume_stalled_batches` sends it later)."""
    # the batch id alone from the start: the message an older worker understands too
    args: list[object] = [batch_id] if checkpoint == 0 else [batch_id, checkpoint]
    app_or_default(app).send_task(INGEST_BATCH_TASK, args=args, queue=CPU_QUEUE)


def resume_stalled_batches(
    *, older_than_s: float = BATCH_STALLED_AFTER_S, app: Celery | None = None, runtime: Runtime | None = None
) -> list[str]:
    """Sends on, from its checkpoint, every running batch without progress for `older_than_s`; returns
    their ids. Whatever the cpu queue holds: a message of the batch's that is still waiting and this one
    carry the same checkpoint, and the walk that records progress first makes the other a no-op."""
    app = app_or_default(app)
    runtime = runtime or get_runtime()
    cutoff = utcnow() - timedelta(seconds=older_than_s)
    with runtime.sessions() as session:
        stalled = list(session.execute(select(Batch.id, Batch.checkpoint).where(_stalled(cutoff))))
        resumed = [
            (row.id, row.checkpoint) for row in stalled if _claim(session, row.id, row.checkpoint, cutoff)
        ]
    for batch_id, checkpoint in resumed:
        send_ingest_batch(batch_id, checkpoint, app=app)
    ids = [batch_id for batch_id, _ in resumed]
    if ids:
        log.warning("resumed %d stalled batch(es): %s", len(ids), ", ".join(ids))
    return ids


def _stalled(cutoff: datetime) -> ColumnElement[bool]:
    return (Batch.status == BatchStatus.RUNNING.value) & or_(
        Batch.updated_at.is_(None), Batch.updated_at <= cutoff
    )


def _claim(session: Session, batch_id: str, checkpoint: int, cutoff: datetime) -> bool:
    # moving updated_at on keeps the next sweep (or another process's) from sending it again meanwhile;
    # the checkpoint too must be unchanged, so the message sent carries the one the row holds
    claimed = session.execute(
        update(Batch)
        .where(Batch.id == batch_id, _stalled(cutoff), Batch.checkpoint == checkpoint)
        .values(updated_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    session.commit()
    return claimed == 1


def resume_stalled_batches_task(self: Task, older_than_s: float = BATCH_STALLED_AFTER_S) -> list[str]:
    return resume_stalled_batches(older_than_s=older_than_s, app=self.app)


def register_batch_tasks(app: Celery) -> None:
    register_task(
        app, INGEST_BATCH_TASK, ingest_batch_task, base=BatchTask, limits=WALK_LIMITS_S, queue=CPU_QUEUE
    )
    register_task(app, RESUME_BATCHES_TASK, resume_stalled_batches_task, queue=CPU_QUEUE)
    # for deployments that run `celery -A workers.app beat`; the embedded worker sweeps by itself
    app.conf.beat_schedule = {
        **(app.conf.beat_schedule or {}),
        "resume-batches": {"task": RESUME_BATCHES_TASK, "schedule": RESUME_EVERY_S},
    }
