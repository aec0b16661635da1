"""Celery app, tasks and worker start-up. `enqueue` is what the API and `bayou ingest` call."""

from workers.dispatch import enqueue

__all__ = ["enqueue"]
