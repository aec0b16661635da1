"""One worker inside another process (`bayou serve` with the embedded defaults): real Celery, the same
tasks, every queue, run in a thread. A thread of its own also sweeps stuck documents, because the
embedded broker never redelivers a message whose worker died with it.

Completion callbacks are served by a second consumer in a thread of its own (on its own Celery app, so
that the two consumers' queue selections stay apart): a callback waits on someone else's server, up to
its deadline per try, and must never make a document wait behind it. Callbacks run one at a time there;
each try ends at its deadline (workers.callback_wire)."""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from celery import Celery
from celery.platforms import EX_OK
from celery.worker import WorkController
from celery.worker import state as worker_state

from bayou.settings import Settings
from workers.app import make_app
from workers.batching import resume_stalled_batches
from workers.broker import prune_embedded_broker
from workers.default_app import app_or_default
from workers.queues import CALLBACK_QUEUE, DOCUMENT_QUEUES
from workers.runtime import check_schema, get_runtime
from workers.sqlite_broker import interrupt_waits
from workers.stuck import requeue_stuck

log = logging.getLogger(__name__)

SWEEP_EVERY_S = 60.0


@dataclass
class EmbeddedWorker:
    controller: WorkController
    thread: threading.Thread
    sweeper: threading.Thread
    stopping: threading.Event = field(default_factory=threading.Event)
    callbacks: threading.Thread | None = None

    def stop(self, timeout: float = 30.0) -> None:
        """Stops after the task in hand (its message is given back to the broker if it does not end)."""
        self.stopping.set()
        # the flag a SIGTERM would set: the worker's event loop sees it at its next turn and shuts down
        # in its own thread. Stopping it from this thread instead closes its broker connection under it
        # while it reads (with Redis: "I/O operation on closed file", and sometimes a hang)
        worker_state.should_stop = EX_OK
        interrupt_waits()  # the embedded broker's consumer would otherwise see the flag after its wait
        consumers = [self.thread] + ([self.callbacks] if self.callbacks is not None else [])
        try:
            for consumer in consumers:
                consumer.join(timeout)
        finally:
            worker_state.should_stop = None  # the process may start another worker later (tests do)
        self.sweeper.join(timeout)
        for consumer in consumers:
            if consumer.is_alive():
                log.warning(
                    "the embedded worker's thread %s did not stop within %.0f s; it is at:\n%s",
                    consumer.name,
                    timeout,
                    _stack(consumer),
                )


def _stack(thread: threading.Thread) -> str:
    # where a thread that will not stop is stuck: what an operator (or a bug report) needs
    frame = sys._current_frames().get(thread.ident or -1)
    return "".join(traceback.format_stack(frame)) if frame is not None else "(no frame)"


def start_worker_thread(
    app: Celery | None = None,
    *,
    sweep_every_s: float = SWEEP_EVERY_S,
    stuck_after_s: float | None = None,
) -> EmbeddedWorker:
    """Starts a worker on every queue in a daemon thread and returns at once (it starts consuming
    within a second or two). Stop it with `.stop()`."""
    app = app_or_default(app)
    settings = get_runtime().settings
    check_schema(settings)
    app.finalize()
    controller = WorkController(
        app=app,
        queues=list(DOCUMENT_QUEUES),
        pool="solo",  # the task runs in the worker's thread: one at a time, as a GPU wants
        concurrency=1,
        # the only worker there is: holding a batch's worth of messages keeps no one else waiting, and
        # lets extractions form batches
        prefetch_multiplier=settings.batch_size,
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
        loglevel=logging.INFO,
    )
    thread = threading.Thread(target=_run, args=(app, controller), name="bayou-worker", daemon=True)
    callback_app = _callback_app(settings)
    callbacks = threading.Thread(
        target=_run,
        args=(callback_app, _single_queue_controller(callback_app, CALLBACK_QUEUE)),
        name="bayou-callbacks",
        daemon=True,
    )
    stopping = threading.Event()
    sweeper = threading.Thread(
        target=_sweep,
        args=(
            app,
            stopping,
            sweep_every_s,
            settings.stuck_after_s if stuck_after_s is None else stuck_after_s,
        ),
        name="bayou-requeue",
        daemon=True,
    )
    worker = EmbeddedWorker(controller, thread, sweeper, stopping, callbacks)
    thread.start()
    callbacks.start()
    sweeper.start()
    return worker


def _callback_app(settings: Settings) -> Celery:
    # a second app of the same configuration: a consumer's queue selection is kept in its app
    callback_app = make_app(settings)
    callback_app.finalize()
    return callback_app


class _PollingController(WorkController):
    """A worker that polls its broker instead of running an event loop: kombu's event loop (the hub) is
    one per process, and the documents' worker may already run it (with Redis), from its own thread."""

    def should_use_eventloop(self) -> bool:
        return False


def _single_queue_controller(app: Celery, queue: str) -> WorkController:
    return _PollingController(
        app=app,
        queues=[queue],
        pool="solo",
        concurrency=1,
        prefetch_multiplier=1,
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
        loglevel=logging.INFO,
    )


def _run(app: Celery, controller: WorkController) -> None:
    # the solo pool looks tasks up in the thread's current app; set it for this thread only, so the
    # host process (the API) keeps whatever current app it had
    app.set_current()
    controller.start()


def _sweep(app: Celery, stopping: threading.Event, every_s: float, stuck_after_s: float) -> None:
    # first sweep at once: documents left behind by the previous run of the process go again
    chores: list[tuple[str, Callable[[], object]]] = [
        ("re-sending stuck documents", lambda: requeue_stuck(older_than_s=stuck_after_s, app=app)),
        ("resuming stalled batches", lambda: resume_stalled_batches(app=app)),
        (
            "pruning the broker",
            lambda: prune_embedded_broker(get_runtime().settings, older_than_s=stuck_after_s),
        ),
    ]
    while not stopping.is_set():
        for name, chore in chores:
            try:
                chore()
            except Exception:  # the database or broker may be briefly away; the next sweep tries again
                log.exception("sweep: %s failed", name)
        stopping.wait(every_s)
