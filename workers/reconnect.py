"""What a broker reconnect takes from the extraction micro-batcher, given back.

When the consumer's connection breaks, Celery's event loop (`celery.worker.loops.asynloop`) clears the
hub's whole timer, so that callbacks armed for the dead connection do not fire against it. celery-batches
keeps the flush timer it armed on that timer in `Batches._tref`, and arms one only while `_tref` is None:
after a reconnect its timer is gone but `_tref` still says armed (seen in the broker-restart test: a
request in hand, `_tref` set, nothing on the timer). What is in hand then waits for more requests:
`flush_every` of them, or one arriving with nothing behind it (workers.microbatch); the last extraction of
a burst waits for its message's redelivery (the visibility timeout, 2 h) or the stuck sweep (30 min)
instead of `flush_interval`. A consumer bootstep is started again at every reconnect, after the timer was
cleared, so this one arms the timer anew there.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, bootsteps
from celery_batches import Batches


class RearmBatchFlushTimers(bootsteps.StartStopStep):
    """Re-arms the flush timer of every Batches task each time the consumer (re)starts."""

    # after Tasks, which (re)installs the batch tasks' strategies on this consumer's timer
    requires = ("celery.worker.consumer.tasks:Tasks",)

    def start(self, c: Any) -> None:
        for task in batch_tasks(c.app):
            rearm_flush_timer(task, c.timer)


def batch_tasks(app: Celery) -> list[Batches]:
    return [task for task in app.tasks.values() if isinstance(task, Batches)]


def rearm_flush_timer(task: Batches, timer: Any) -> None:
    """Arms the task's flush timer again if celery-batches believes it armed. Cancelling the old entry
    first keeps two timers from running should it have survived (a restart that cleared nothing)."""
    if task._tref is None:  # nothing buffered: the next request arms a timer itself
        return
    task._tref.cancel()
    task._tref = timer.call_repeatedly(task.flush_interval, task._do_flush)


def register_reconnect_steps(app: Celery) -> None:
    app.steps["consumer"].add(RearmBatchFlushTimers)
