"""Sending work to the queues. `enqueue` is what the API and `bayou ingest` call after creating a
document's row."""

from __future__ import annotations

from celery import Celery

from workers.names import EXTRACT_BATCH_TASK, EXTRACT_TASK, RASTERIZE_TASK
from workers.queues import CPU_QUEUE, extract_queue


def enqueue(document_id: str, *, model: str | None, doc_type: str, app: Celery | None = None) -> None:
    """Queues a newly created document: rasterised on `cpu`, then extracted on its model's GPU queue.
    Raises kombu's OperationalError when the broker cannot be reached."""
    send_rasterize(document_id, extract_queue(model, doc_type), app=app)


def send_rasterize(document_id: str, gpu_queue: str, *, app: Celery | None = None) -> None:
    _app(app).send_task(RASTERIZE_TASK, args=[document_id], kwargs={"gpu_queue": gpu_queue}, queue=CPU_QUEUE)


def send_extract(document_id: str, gpu_queue: str, *, app: Celery | None = None) -> None:
    """The document's extraction, batched with whatever else its GPU worker has in hand."""
    _app(app).send_task(EXTRACT_BATCH_TASK, args=[document_id], queue=gpu_queue)


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
    _app(app).send_task(EXTRACT_TASK, args=[document_id], kwargs=kwargs, queue=gpu_queue, countdown=countdown)


def _app(app: Celery | None) -> Celery:
    if app is not None:
        return app
    from workers.app import get_app

    return get_app()
