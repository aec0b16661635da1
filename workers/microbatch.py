"""The extraction micro-batcher: celery-batches' `Batches`, with a flush as soon as no company is coming.

celery-batches runs a batch when `flush_every` requests are in hand, or on a timer `flush_interval`
after the first one arrived. Waiting out the timer is right while more extractions are on their way and
pure loss when none are: a lone document waited the whole `flush_interval`. So after each request this
looks at the broker, and runs the batch at once when nothing that would join it is waiting: no message
in the request's own queue and, for a worker that also rasterises (the embedded worker, `bayou worker`
without --queues), none in the `cpu` queue, whose rasterisations each end in an extraction here. Under a
burst there is always more waiting, so batches still fill up; the timer stays as the upper bound.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from celery_batches import Batches
from kombu.exceptions import ChannelError

from workers.queues import CPU_QUEUE

log = logging.getLogger(__name__)


class MicroBatches(Batches):
    """`Batches` that flushes at once when `nothing_coming` says no more requests are on their way."""

    def Strategy(self, task: Any, app: Any, consumer: Any) -> Callable[..., None]:
        handle = super().Strategy(task, app, consumer)
        # celery-batches hands a batch to the pool without the task's time limits; this pool adds them
        self._pool = TimeLimitedPool(self._pool, soft_s=self.soft_time_limit, hard_s=self.time_limit)

        def on_request(message: Any, *args: Any, **kwargs: Any) -> None:
            handle(message, *args, **kwargs)
            # the handler may just have flushed a full batch; then there is nothing left to decide
            if not self._buffer.empty() and nothing_coming(message, consumed_queues(consumer)):
                self._do_flush()

        return on_request


def consumed_queues(consumer: Any) -> set[str]:
    task_consumer = getattr(consumer, "task_consumer", None)
    return {queue.name for queue in getattr(task_consumer, "queues", ())}


def feeding_queues(queue: str | None, consumed: Iterable[str]) -> list[str]:
    """The queues whose messages would join a batch from `queue`: its own, and `cpu` when this worker
    consumes it too (each rasterisation it runs sends an extraction on)."""
    queues = [queue] if queue else []
    if CPU_QUEUE in consumed and queue != CPU_QUEUE:
        queues.append(CPU_QUEUE)
    return queues


def nothing_coming(message: Any, consumed: Iterable[str]) -> bool:
    """True when the broker holds no message, in the queues that feed this batch, that no worker has taken
    yet. A broker that cannot say (an error) counts as busy: the timer then decides, as before."""
    queue = (getattr(message, "delivery_info", None) or {}).get("routing_key")
    queues = feeding_queues(queue, consumed)
    if not queues:
        return False
    try:
        return all(waiting(message.channel, name) == 0 for name in queues)
    except Exception:  # the batch is not lost by this: the timer flushes it
        log.debug("could not count waiting messages; the batch waits for its timer", exc_info=True)
        return False


def waiting(channel: Any, queue: str) -> int:
    size = getattr(channel, "_size", None)
    if size is not None:
        # kombu's virtual transports (Redis, SQLAlchemy) count a queue with this: one round trip, where
        # a passive declare first asks whether the queue exists
        return int(size(queue))
    try:
        return channel.queue_declare(queue, passive=True).message_count
    except ChannelError:  # Redis drops an empty list: no queue is an empty queue
        return 0


class TimeLimitedPool:
    """A worker pool whose `apply_async` passes the batch task's soft and hard time limits, as Celery does
    for a plain task. Pools that cannot enforce limits (solo, threads) ignore them, as for plain tasks."""

    def __init__(self, pool: Any, *, soft_s: float | None, hard_s: float | None) -> None:
        self.pool = pool
        self.soft_s = soft_s
        self.hard_s = hard_s

    def apply_async(self, target: Any, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        options.setdefault("soft_timeout", self.soft_s)
        options.setdefault("timeout", self.hard_s)
        return self.pool.apply_async(target, args, kwargs, **options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pool, name)
