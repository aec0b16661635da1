"""The Celery tasks. Each is a thin shell around a stage function (rasterizing, extracting, stuck):
it adds what only the queue knows about (task id, retries, routing to the next queue)."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded
from celery_batches import Batches, SimpleRequest

from bayou.settings import Settings
from extractor.registry import DIRECTORY_QUEUE
from workers.dispatch import send_extract, send_extract_alone
from workers.documents import fail
from workers.extracting import ExtractJob, extract_batch, extract_stored
from workers.microbatch import MicroBatches
from workers.names import EXTRACT_BATCH_TASK, EXTRACT_TASK, RASTERIZE_TASK, REQUEUE_STUCK_TASK
from workers.outcomes import INTERNAL_ERROR, TIMED_OUT, Outcome
from workers.queues import CPU_QUEUE
from workers.rasterizing import rasterize_stored
from workers.runtime import get_runtime
from workers.stuck import requeue_stuck
from workers.transient import (
    TRANSIENT_ERRORS,
    RetryingTask,
    fewer_tiles,
    free_gpu_memory,
    is_out_of_memory,
    register_task,
)

log = logging.getLogger(__name__)

OUT_OF_MEMORY = "out_of_memory"

# soft: the task is told and fails the document; hard: the process is killed and the document is
# left to requeue_stuck (Settings.stuck_after_s is longer than any of these). The extract task's limits
# are settings (a slow GPU, a large batch); rasterising has no such knob
RASTERIZE_LIMITS_S = (300, 330)
OOM_RETRY_DELAY_S = 5
TRANSIENT_RETRY_DELAY_S = 10
# A batch is run when Settings.batch_size extractions are in hand, when no more are waiting in the
# broker (workers.microbatch), or at the latest Settings.batch_wait_s after the first arrived; a GPU
# worker must prefetch at least batch_size messages for batches to form (`bayou worker` sees to it).


class DocumentTask(RetryingTask):
    """A task whose first argument is a document id. A failure that is not transient fails the document
    (with acks_late the message is gone, and a document left processing would only be re-sent to fail
    the same way); a transient one that outlived its retries leaves it for requeue_stuck."""

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        if isinstance(exc, TRANSIENT_ERRORS) or not args:
            return
        code = TIMED_OUT if isinstance(exc, SoftTimeLimitExceeded) else INTERNAL_ERROR
        try:
            with get_runtime().sessions() as session:
                fail(session, args[0], code, f"{type(exc).__name__}: {exc}")
        except Exception:  # the database may be the problem; the failure is logged by Celery anyway
            log.exception("could not mark document %s failed", args[0])


def rasterize_task(self: Task, document_id: str, gpu_queue: str) -> str:
    outcome = rasterize_stored(get_runtime(), document_id)
    if outcome is Outcome.RASTERIZED:
        # a broker that cannot take the message raises BrokerUnavailable (transient): the task is retried,
        # and the retry finds the pages stored and sends the extraction again
        send_extract(document_id, gpu_queue, app=self.app)
    return outcome.value


def extract_task(self: Task, document_id: str, max_tiles: int | None = None) -> str:
    try:
        # the task id survives retries and redeliveries, so a repeat of this message finds its own run
        outcome = extract_stored(
            get_runtime(), document_id, idempotency_key=self.request.id, max_tiles=max_tiles
        )
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        return _retry_with_fewer_tiles(self, document_id, max_tiles, error)
    return outcome.value


def _retry_with_fewer_tiles(self: Task, document_id: str, max_tiles: int | None, error: Exception) -> str:
    free_gpu_memory()
    fewer = fewer_tiles(max_tiles)
    if fewer is None:
        with get_runtime().sessions() as session:
            fail(session, document_id, OUT_OF_MEMORY, "out of GPU memory even with one tile")
        return Outcome.FAILED.value
    log.warning("document %s: out of GPU memory, retrying with at most %d tiles", document_id, fewer)
    raise self.retry(kwargs={"max_tiles": fewer}, countdown=OOM_RETRY_DELAY_S, exc=error)


def extract_batch_task(self: Batches, requests: list[SimpleRequest]) -> list[str]:
    """Extracts the documents of several messages in one batched generate. celery-batches acknowledges
    the messages when this returns, whatever happened, so nothing may be left undone: what the batch
    could not finish is handed to the single-document task, whose retries take it from there."""
    jobs = [ExtractJob(request.args[0], request.id) for request in requests]
    try:
        outcomes = extract_batch(get_runtime(), jobs)
    except Exception as error:
        _hand_over(self, requests, error)
        return []
    return [outcome.value for outcome in outcomes]


def _hand_over(self: Batches, requests: list[SimpleRequest], error: Exception) -> None:
    if is_out_of_memory(error):
        free_gpu_memory()
        options: dict[str, Any] = {"max_tiles": fewer_tiles(None), "countdown": OOM_RETRY_DELAY_S}
    elif isinstance(error, TRANSIENT_ERRORS):
        options = {"countdown": TRANSIENT_RETRY_DELAY_S}
    else:
        log.exception("extraction batch failed", exc_info=error)
        code = TIMED_OUT if isinstance(error, SoftTimeLimitExceeded) else INTERNAL_ERROR
        with get_runtime().sessions() as session:
            for request in requests:
                fail(session, request.args[0], code, f"{type(error).__name__}: {error}")
        return
    log.warning("batch of %d: %s; extracting its documents one by one", len(requests), type(error).__name__)
    for request in requests:
        queue = (request.delivery_info or {}).get("routing_key") or DIRECTORY_QUEUE
        send_extract_alone(request.args[0], queue, app=self.app, **options)


def requeue_stuck_task(self: Task, older_than_s: float | None = None) -> list[str]:
    return requeue_stuck(older_than_s=older_than_s, app=self.app)


def register_tasks(app: Celery, settings: Settings) -> None:
    register_task(app, RASTERIZE_TASK, rasterize_task, base=DocumentTask, limits=RASTERIZE_LIMITS_S)
    extract_limits = (settings.extract_time_limit_s, settings.extract_hard_limit_s)
    register_task(app, EXTRACT_TASK, extract_task, base=DocumentTask, limits=extract_limits)
    # celery-batches' task retries nothing itself: what a batch cannot finish goes to EXTRACT_TASK
    app.task(
        shared=False,
        name=EXTRACT_BATCH_TASK,
        bind=True,
        base=MicroBatches,
        flush_every=settings.batch_size,
        flush_interval=settings.batch_wait_s,
        soft_time_limit=settings.extract_time_limit_s,
        time_limit=settings.extract_hard_limit_s,
    )(extract_batch_task)
    register_task(app, REQUEUE_STUCK_TASK, requeue_stuck_task, queue=CPU_QUEUE)
