"""Which failures are worth retrying: the database or broker briefly away, the GPU out of memory."""

from __future__ import annotations

import logging
import sys
from typing import Any

from celery import Task
from celery.exceptions import Reject
from kombu.exceptions import OperationalError as BrokerOperationalError
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.exc import OperationalError as DatabaseOperationalError

from workers.dispatch import FOLLOW_UP_RETRY_POLICY, BrokerUnavailable, is_broker_fault

log = logging.getLogger(__name__)

# faults of the surroundings, not of the document: retried with backoff, a bounded number of times
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    DatabaseOperationalError,
    DisconnectionError,
    BrokerOperationalError,
    # a message the broker could not take (workers.dispatch): already a BrokerOperationalError, named
    # here because the broker client's own errors while it reconnects are not (issue #4)
    BrokerUnavailable,
    ConnectionError,
)
# how a task retries a transient failure: bounded, with growing, jittered delays (no retry storm)
RETRY_POLICY: dict[str, Any] = {
    "autoretry_for": TRANSIENT_ERRORS,
    "max_retries": 5,
    "retry_backoff": 2,
    "retry_backoff_max": 120,
    "retry_jitter": True,
}


class RetryingTask(Task):
    """A task whose retry, when the broker cannot take it, gives its message back instead of losing it.

    Celery sends a retry as a new message and, if that send fails, rejects the message in hand without
    requeueing it: with acks_late that drops it, and its document waits for the stuck sweep (30 minutes) —
    in just the case the retries are for, a broker restarting (Celery's `Task.retry`: a failed send raises
    `Reject(requeue=False)`). Here the send waits out a restart as a follow-up send does (about 30 s), and if the
    broker is still away the message is rejected *with* requeue: back in its queue at once where the broker
    takes it (Redis, the embedded broker), or, Redis's connection being gone, left unacknowledged for Redis to
    hand out again after its visibility timeout.

    Once per message: a message Redis has given back before (`redelivered`) is dropped as Celery drops it,
    so a broker that takes requeues but not publishes cannot keep one going round (the sweeps pick its
    document or batch up). The embedded broker does not mark what it gives back; a document's attempts
    (`workers.documents.gave_up`) and the ~30 s each failed send waits bound the rounds there. A send that
    fails for the message's own sake is rejected as Celery does."""

    def retry(self, *args: Any, **options: Any) -> Any:
        options.setdefault("retry_policy", FOLLOW_UP_RETRY_POLICY)
        try:
            return super().retry(*args, **options)
        except Reject as rejected:
            unsent = rejected.reason
            if rejected.requeue or not isinstance(unsent, BaseException) or not is_broker_fault(unsent):
                raise
            if was_redelivered(self.request):
                log.warning(
                    "task %s[%s]: its retry could not be sent again (%s); left to the sweeps",
                    self.name,
                    self.request.id,
                    type(unsent).__name__,
                )
                raise
            log.warning(
                "task %s[%s]: its retry could not be sent (%s); the message goes back to the broker",
                self.name,
                self.request.id,
                type(unsent).__name__,
            )
            raise Reject(unsent, requeue=True) from unsent


def register_task(
    app: Any,
    name: str,
    function: Any,
    *,
    base: type[Task] = RetryingTask,
    limits: tuple[float, float] | None = None,
    **options: Any,
) -> Any:
    """Registers `function` as a bound task of `app` with the transient-fault retries (RETRY_POLICY) and,
    with `limits`, soft and hard time limits. `options` go to Celery (a queue, another retry policy)."""
    soft, hard = limits or (None, None)
    # shared=False: Celery would otherwise also give the task to every app made later, the default app
    # included, and a task bound to that one sends its follow-up messages to no broker at all
    settings = {**RETRY_POLICY, **options}
    return app.task(
        shared=False, name=name, bind=True, base=base, soft_time_limit=soft, time_limit=hard, **settings
    )(function)


def was_redelivered(request: Any) -> bool:
    """Whether the broker marked the task's message as given back before (Redis does; the embedded broker not)."""
    delivery_info = getattr(request, "delivery_info", None) or {}
    return bool(delivery_info.get("redelivered"))


DEFAULT_MAX_TILES = 6  # both published checkpoints' max_dynamic_patch


def is_out_of_memory(error: BaseException) -> bool:
    # torch is only in the process if a model ran, and only a model can run out of GPU memory
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(error, torch.cuda.OutOfMemoryError)


def free_gpu_memory() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def fewer_tiles(max_tiles: int | None) -> int | None:
    """The tile budget for a retry after running out of memory: half, down to one; None when already one."""
    current = max_tiles or DEFAULT_MAX_TILES
    return current // 2 if current > 1 else None
