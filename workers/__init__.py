"""Celery app, tasks and worker start-up. `enqueue` is what the API and `bayou ingest` call."""

# imported for what importing it does: it names the process's app as the senders' default
# (workers.default_app), before any module of the package can send
from workers import app as _app  # noqa: F401
from workers.dispatch import enqueue

__all__ = ["enqueue"]
