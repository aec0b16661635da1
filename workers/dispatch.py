"""Sending work to the queues. `enqueue` is what the API and `bayou ingest` call after creating a
document's row."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from celery import Celery
from kombu.exceptions import OperationalError

from workers.default_app import app_or_default
from workers.names import EXTRACT_BATCH_TASK, EXTRACT_TASK, RASTERIZE_TASK
from workers.queues import CPU_QUEUE, extract_queue

# the code that talks to the broker: kombu's connections, transports and publishing (its producer and
# the entity declarations a publish makes), and the clients they drive (redis-py for Redis, py-amqp for
# RabbitMQ, SQLAlchemy for the embedded broker). Celery's routing and kombu's serialisation are not in it:
# an unknown queue or an unserialisable argument is a bug of the sender, not a broker fault.
BROKER_CLIENT_MODULES = (
    "kombu.connection",
    "kombu.transport",
    "kombu.messaging",
    "kombu.common",
    "redis",
    "amqp",
    "sqlalchemy",
)
# a worker sending a document's next step waits out a restarting broker (kombu reconnects at these
# intervals, about 30 s in all) instead of Celery's default second or so: after that, the task's own
# retry could not be sent either. `enqueue`, with an uploader waiting, keeps the default.
FOLLOW_UP_RETRY_POLICY: dict[str, float] = {
    "max_retries": 8,
    "interval_start": 0.5,
    "interval_step": 1.0,
    "interval_max": 5.0,
}


class BrokerUnavailable(OperationalError):
    """A message could not be handed to the broker: it is down, restarting, or the client is caught half
    way through reconnecting. Transient (a kombu OperationalError, as the broker being down always was):
    the sending task is retried, the document is never failed for it."""


def enqueue(document_id: str, *, model: str | None, doc_type: str, app: Celery | None = None) -> None:
    """Queues a newly created document: rasterised on `cpu`, then extracted on its model's GPU queue.
    Raises BrokerUnavailable (a kombu OperationalError) when the broker cannot take the message."""
    send_rasterize(document_id, extract_queue(model, doc_type), app=app)


def send_rasterize(document_id: str, gpu_queue: str, *, app: Celery | None = None) -> None:
    _send(app, RASTERIZE_TASK, args=[document_id], kwargs={"gpu_queue": gpu_queue}, queue=CPU_QUEUE)


def send_extract(document_id: str, gpu_queue: str, *, app: Celery | None = None) -> None:
    """The document's extraction, batched with whatever else its GPU worker has in hand."""
    _send(app, EXTRACT_BATCH_TASK, args=[document_id], queue=gpu_queue, retry_policy=FOLLOW_UP_RETRY_POLICY)


def send_extract_alone(
    document_id: str,
    gpu_queue: str,
    *,
    max_tiles: int | None = None,
    countdown: float | None = None,
    app: Celery | None = None,
) -> None:
    """The document's extraction on its own, with the single task's retries."""
    kwargs = {"max_tiles": max_tiles} if max_tiles else {}
    _send(
        app,
        EXTRACT_TASK,
        args=[document_id],
        kwargs=kwargs,
        queue=gpu_queue,
        countdown=countdown,
        retry_policy=FOLLOW_UP_RETRY_POLICY,
    )


def _send(app: Celery | None, name: str, **options: Any) -> None:
    sender = app_or_default(app)
    try:
        sender.send_task(name, **options)
    except Exception as error:
        if not is_broker_fault(error):
            raise
        raise BrokerUnavailable(f"could not send {name}: {type(error).__name__}: {error}") from error


def is_broker_fault(error: BaseException) -> bool:
    """True for a send that failed because of the broker, not the message: kombu's own verdict (the
    OperationalError it raises once its reconnects ran out), or any error raised inside the broker client.

    The second matters while a broker restarts: the client then reaches for state its own reconnect has
    just dropped, and fails with errors no one lists as a connection error (issue #4, kombu 5.7 on Redis):
    kombu's Producer._publish declares the message's queue under a nested `Connection.ensure`, whose
    reconnect closes the channel _publish already holds and revives only the queue; _publish then
    publishes on the closed channel, and kombu's Redis transport fails on `channel.connection` being None
    (AttributeError: 'NoneType' object has no attribute 'client'). An error raised in our own code (a
    publish signal handler, say) is not matched, whatever its type."""
    return isinstance(error, OperationalError) or _raised_in(error.__traceback__, BROKER_CLIENT_MODULES)


def _raised_in(traceback: TracebackType | None, modules: tuple[str, ...]) -> bool:
    """Whether the innermost frame of `traceback` runs code of one of `modules` (or their submodules)."""
    if traceback is None:
        return False
    while traceback.tb_next is not None:
        traceback = traceback.tb_next
    module = str(traceback.tb_frame.f_globals.get("__name__", ""))
    return any(module == name or module.startswith(f"{name}.") for name in modules)
