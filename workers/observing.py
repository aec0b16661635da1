"""What ties the workers to bayou's logging and metrics: Celery signal receivers.

- `setup_logging`: a worker started by Celery's own command line (`bayou worker`) logs in bayou's format
  (BAYOU_LOG_FORMAT) instead of Celery's; having a receiver is what stops Celery from replacing the root
  logger's handlers.
- `task_prerun` / `task_postrun`: the task id, and the document id of the tasks whose first argument is
  one, go on every line the task logs; the rasterize task's duration is the `rasterize` stage.
- `worker_process_init`: a pool process starts the metrics exporter when `--metrics-port` asked for one.
"""

from __future__ import annotations

from typing import Any

from celery.signals import setup_logging, task_postrun, task_prerun, worker_process_init

from bayou.logs import bind_document_id, bind_task_id, clear_context, configure_logging
from bayou.settings import get_settings
from workers import telemetry
from workers.callbacks import CALLBACK_TASK
from workers.names import EXTRACT_TASK, RASTERIZE_TASK

# tasks whose first positional argument is a document id (the batched extraction's is a list of
# requests: its documents are bound one by one where workers.extracting stores them)
DOCUMENT_TASKS = frozenset({RASTERIZE_TASK, EXTRACT_TASK, CALLBACK_TASK})
STAGE_OF_TASK = {RASTERIZE_TASK: telemetry.RASTERIZE_STAGE}


def connect_signals() -> None:
    """Idempotent: Celery keeps one connection per receiver."""
    setup_logging.connect(_setup_logging, weak=False)
    task_prerun.connect(_task_started, weak=False)
    task_postrun.connect(_task_finished, weak=False)
    worker_process_init.connect(_pool_process_started, weak=False)


def _setup_logging(loglevel: int | str | None = None, **_: Any) -> None:
    settings = get_settings()
    # --loglevel, when given, wins over BAYOU_LOG_LEVEL
    configure_logging(settings.log_format, loglevel or settings.log_level)


def _task_started(task_id: str | None = None, task: Any = None, args: Any = None, **_: Any) -> None:
    bind_task_id(task_id)
    bind_document_id(document_id_of(getattr(task, "name", None), args))
    if task_id:
        telemetry.task_started(task_id)


def _task_finished(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    if task_id:
        telemetry.task_finished(task_id, STAGE_OF_TASK.get(getattr(task, "name", "")))
    clear_context()


def _pool_process_started(**_: Any) -> None:
    telemetry.start_exporter()


def document_id_of(task_name: str | None, args: Any) -> str | None:
    if task_name not in DOCUMENT_TASKS or not args:
        return None
    first = args[0]
    return first if isinstance(first, str) else None
