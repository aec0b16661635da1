"""Server-side batches in the background: the task that walks a batch's folder (a thin shell around
`bayou.intake.batches.run_batch`), the message that starts it, and the sweep that starts again a batch
whose walk died with its worker (the embedded broker never redelivers; a message may also never have
been sent, the broker being down when the batch was asked for)."""

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
from workers.broker import waiting_messages
from workers.dispatch import app_or_default, enqueue
from workers.names import INGEST_BATCH_TASK, RESUME_BATCHES_TASK
from workers.outcomes import INTERNAL_ERROR
from workers.queues import CPU_QUEUE
from workers.runtime import Runtime, get_runtime
from workers.transient import RETRY_POLICY, TRANSIENT_ERRORS

log = logging.getLogger(__name__)

# a walk records progress every second or so; this long without any, it is gone
BATCH_STALLED_AFTER_S = 10 * 60
RESUME_EVERY_S = 5 * 60


class BatchTask(Task):
    """A failure that is not transient fails the batch: run again, it would fail the same way."""

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        if isinstance(exc, TRANSIENT_ERRORS) or not args:
            return
        try:
            with get_runtime().sessions() as session:
                mark_failed(session, args[0], INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
        except Exception:  # the database may be the problem; Celery logs the failure anyway
            log.exception("could not mark batch %s failed", args[0])


def ingest_batch_task(self: Task, batch_id: str) -> str | None:
    return run_batch(batch_job(get_runtime(), self.app), batch_id)


def batch_job(runtime: Runtime, app: Celery) -> BatchJob:
    return BatchJob(runtime.sessions, runtime.blobs, runtime.settings, enqueue=partial(enqueue, app=app))


def send_ingest_batch(batch_id: str, *, app: Celery | None = None) -> None:
    """Starts the batch's walk on a cpu worker. Raises kombu's OperationalError when the broker cannot
    be reached (the batch stays running, and `resume_stalled_batches` sends it later)."""
    app_or_default(app).send_task(INGEST_BATCH_TASK, args=[batch_id], queue=CPU_QUEUE)


def resume_stalled_batches(
    *, older_than_s: float = BATCH_STALLED_AFTER_S, app: Celery | None = None, runtime: Runtime | None = None
) -> list[str]:
    """Sends again every running batch without progress for `older_than_s`, unless the cpu queue still
    holds messages (its own may be among them); returns their ids. Sending one twice is harmless."""
    app = app_or_default(app)
    runtime = runtime or get_runtime()
    cutoff = utcnow() - timedelta(seconds=older_than_s)
    with runtime.sessions() as session:
        stalled = list(session.scalars(select(Batch.id).where(_stalled(cutoff))))
        session.commit()  # no transaction left open while the broker is asked (it may be slow to answer)
        if not stalled or waiting_messages(app, runtime.settings, CPU_QUEUE):
            return []
        resumed = [batch_id for batch_id in stalled if _claim(session, batch_id, cutoff)]
    for batch_id in resumed:
        send_ingest_batch(batch_id, app=app)
    if resumed:
        log.warning("resumed %d stalled batch(es): %s", len(resumed), ", ".join(resumed))
    return resumed


def _stalled(cutoff: datetime) -> ColumnElement[bool]:
    return (Batch.status == BatchStatus.RUNNING.value) & or_(
        Batch.updated_at.is_(None), Batch.updated_at <= cutoff
    )


def _claim(session: Session, batch_id: str, cutoff: datetime) -> bool:
    # moving updated_at on keeps the next sweep (or another process's) from sending it again meanwhile
    claimed = session.execute(
        update(Batch)
        .where(Batch.id == batch_id, _stalled(cutoff))
        .values(updated_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    session.commit()
    return claimed == 1


def resume_stalled_batches_task(self: Task, older_than_s: float = BATCH_STALLED_AFTER_S) -> list[str]:
    return resume_stalled_batches(older_than_s=older_than_s, app=self.app)


def register_batch_tasks(app: Celery) -> None:
    # no time limit: a folder may hold more than any limit would allow, and a walk that is killed
    # resumes from the start at no cost but the re-reading
    app.task(
        shared=False, name=INGEST_BATCH_TASK, bind=True, base=BatchTask, queue=CPU_QUEUE, **RETRY_POLICY
    )(ingest_batch_task)
    app.task(shared=False, name=RESUME_BATCHES_TASK, bind=True, queue=CPU_QUEUE, **RETRY_POLICY)(
        resume_stalled_batches_task
    )
    # for deployments that run `celery -A workers.app beat`; the embedded worker sweeps by itself
    app.conf.beat_schedule = {
        **(app.conf.beat_schedule or {}),
        "resume-batches": {"task": RESUME_BATCHES_TASK, "schedule": RESUME_EVERY_S},
    }

