"""Server-side batches in the background: the task that walks a batch's folder a slice at a time (a thin
shell around `bayou.intake.batches.run_batch`), the message that starts it or goes on from a checkpoint,
and the sweep that sends on a batch whose walk died with its worker (the embedded broker never
redelivers; a message may also never have been sent, the broker being down at the time). A message whose
cursor is not its batch's (stale, or sent twice) does nothing, so the sweep may send whatever the queue
holds."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from celery import Celery, Task
from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session

from bayou.intake.batches import BatchJob, mark_failed, run_batch
from storage.columns import utcnow
from storage.models import Batch, BatchStatus
from workers.dispatch import app_or_default, enqueue
from workers.names import INGEST_BATCH_TASK, RESUME_BATCHES_TASK
from workers.outcomes import INTERNAL_ERROR
from workers.queues import CPU_QUEUE
from workers.runtime import Runtime, get_runtime
from workers.transient import RETRY_POLICY, TRANSIENT_ERRORS, RetryingTask

log = logging.getLogger(__name__)

# a walk records progress every second or so; this long without any, it is gone
BATCH_STALLED_AFTER_S = 10 * 60
RESUME_EVERY_S = 5 * 60


class BatchTask(RetryingTask):
    """A failure that is not transient fails the batch: run again, it would fail the same way."""

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        if isinstance(exc, TRANSIENT_ERRORS) or not args:
            return
        try:
            with get_runtime().sessions() as session:
                mark_failed(session, args[0], INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
        except Exception:  # the database may be the problem; Celery logs the failure anyway
            log.exception("could not mark batch %s failed", args[0])


def ingest_batch_task(self: Task, batch_id: str, cursor: str | None = None) -> str | None:
    # `cursor`: where the walk goes on (a continuation or a resumed walk); messages from before it
    # existed carry the batch id alone, and start the walk. A retry (after a transient fault) or a
    # redelivery (Redis gives back the message of a worker that died) carries the cursor its first try
    # started from, which that try's checkpoints may have moved on: it goes on from the row's
    return run_batch(
        batch_job(get_runtime(), self.app), batch_id, cursor, from_checkpoint=_tried_before(self.request)
    )


def _tried_before(request: Any) -> bool:
    delivery_info = getattr(request, "delivery_info", None) or {}
    return bool(request.retries) or bool(delivery_info.get("redelivered"))


def batch_job(runtime: Runtime, app: Celery) -> BatchJob:
    return BatchJob(
        runtime.sessions,
        runtime.blobs,
        runtime.settings,
        enqueue=partial(enqueue, app=app),
        continue_walk=partial(send_ingest_batch, app=app),
    )


def send_ingest_batch(batch_id: str, cursor: str | None = None, *, app: Celery | None = None) -> None:
    """Has a cpu worker walk the batch, from the start or on after `cursor`. Raises kombu's
    OperationalError when the broker cannot be reached (the batch stays running, and
    `resume_stalled_batches` sends it later)."""
    # the batch id alone when there is no cursor: the message an older worker understands too
    args = [batch_id] if cursor is None else [batch_id, cursor]
    app_or_default(app).send_task(INGEST_BATCH_TASK, args=args, queue=CPU_QUEUE)


def resume_stalled_batches(
    *, older_than_s: float = BATCH_STALLED_AFTER_S, app: Celery | None = None, runtime: Runtime | None = None
) -> list[str]:
    """Sends on, from its checkpoint, every running batch without progress for `older_than_s`; returns
    their ids. Whatever the cpu queue holds: a message of the batch's that is still waiting and this one
    carry the same cursor, and the walk that records progress first makes the other a no-op."""
    app = app_or_default(app)
    runtime = runtime or get_runtime()
    cutoff = utcnow() - timedelta(seconds=older_than_s)
    with runtime.sessions() as session:
        stalled = list(session.execute(select(Batch.id, Batch.cursor).where(_stalled(cutoff))))
        resumed = [(row.id, row.cursor) for row in stalled if _claim(session, row.id, row.cursor, cutoff)]
    for batch_id, cursor in resumed:
        send_ingest_batch(batch_id, cursor, app=app)
    ids = [batch_id for batch_id, _ in resumed]
    if ids:
        log.warning("resumed %d stalled batch(es): %s", len(ids), ", ".join(ids))
    return ids


def _stalled(cutoff: datetime) -> ColumnElement[bool]:
    return (Batch.status == BatchStatus.RUNNING.value) & or_(
        Batch.updated_at.is_(None), Batch.updated_at <= cutoff
    )


def _claim(session: Session, batch_id: str, cursor: str | None, cutoff: datetime) -> bool:
    # moving updated_at on keeps the next sweep (or another process's) from sending it again meanwhile;
    # the cursor too must be unchanged, so the message sent carries the one the row holds
    claimed = session.execute(
        update(Batch)
        .where(Batch.id == batch_id, _stalled(cutoff), Batch.cursor.is_not_distinct_from(cursor))
        .values(updated_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    session.commit()
    return claimed == 1


def resume_stalled_batches_task(self: Task, older_than_s: float = BATCH_STALLED_AFTER_S) -> list[str]:
    return resume_stalled_batches(older_than_s=older_than_s, app=self.app)


def register_batch_tasks(app: Celery) -> None:
    # no time limit: a slice is short, but one file (a huge one on a slow share) may take long; a walk
    # that is killed resumes from its last checkpoint
    app.task(
        shared=False, name=INGEST_BATCH_TASK, bind=True, base=BatchTask, queue=CPU_QUEUE, **RETRY_POLICY
    )(ingest_batch_task)
    app.task(
        shared=False, name=RESUME_BATCHES_TASK, bind=True, base=RetryingTask, queue=CPU_QUEUE, **RETRY_POLICY
    )(resume_stalled_batches_task)
    # for deployments that run `celery -A workers.app beat`; the embedded worker sweeps by itself
    app.conf.beat_schedule = {
        **(app.conf.beat_schedule or {}),
        "resume-batches": {"task": RESUME_BATCHES_TASK, "schedule": RESUME_EVERY_S},
    }
