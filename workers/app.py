"""The Celery app, configured from Settings. `celery -A workers.app worker` finds it as `app`.

Reliability choices: a message is acknowledged only after its task ran (acks_late) and given back if the
worker process dies (reject_on_worker_lost); a worker process takes one message at a time (prefetch 1)
so a slow task never holds messages another worker could run, except a GPU-only worker, which takes a
batch's worth (`bayou worker` sets it); JSON only, never pickle. State lives in our database, so there
is no result backend. What a broker loses anyway is found by `workers.stuck.requeue_stuck`.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_process_init
from kombu import Exchange, Queue

from bayou.settings import Settings, get_settings
from extractor.registry import models_on
from workers.batching import register_batch_tasks
from workers.broker import broker_url, prepare_embedded, transport_options
from workers.callbacks import register_callback_task
from workers.default_app import set_default_maker
from workers.names import REQUEUE_STUCK_TASK
from workers.observing import connect_signals
from workers.queues import ALL_QUEUES, CPU_QUEUE
from workers.reconnect import register_reconnect_steps
from workers.review_scores import register_review_score_task
from workers.runtime import check_schema, preload_models, reset_runtime
from workers.tasks import register_tasks

log = logging.getLogger(__name__)

connect_signals()  # bayou's log format and ids, task metrics: see workers.observing

APP_NAME = "bayou"
REQUEUE_EVERY_S = 5 * 60


def make_app(settings: Settings) -> Celery:
    prepare_embedded(settings)
    app = Celery(APP_NAME, set_as_current=False)
    app.conf.update(celery_config(settings))
    register_tasks(app, settings)
    register_callback_task(app)
    register_review_score_task(app)
    register_batch_tasks(app)
    register_reconnect_steps(app)  # celery-batches' flush timer after a broker reconnect
    return app


def celery_config(settings: Settings) -> dict[str, Any]:
    return {
        "broker_url": broker_url(settings),
        "broker_transport_options": transport_options(settings),
        "broker_connection_retry_on_startup": True,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_queues": [Queue(name, Exchange(name, type="direct"), routing_key=name) for name in ALL_QUEUES],
        "task_default_queue": CPU_QUEUE,
        "task_create_missing_queues": False,
        "enable_utc": True,
        # for deployments that run `celery -A workers.app beat`; the embedded worker sweeps by itself
        "beat_schedule": {
            "requeue-stuck": {
                "task": REQUEUE_STUCK_TASK,
                "schedule": REQUEUE_EVERY_S,
                "kwargs": {"older_than_s": settings.stuck_after_s},
            }
        },
    }


@lru_cache(maxsize=1)
def get_app() -> Celery:
    """The process's app, from the current settings (tests clear this cache along with get_settings's)."""
    return make_app(get_settings())


set_default_maker(get_app)


def __getattr__(name: str) -> Celery:
    # lazy, so importing this module (e.g. for make_app) reads no settings
    if name == "app":
        return get_app()
    raise AttributeError(name)


def served_queues(app: Celery) -> list[str]:
    """The queues this worker consumes (all of them when none were selected)."""
    selected = app.amqp.queues.consume_from
    return list(selected) if selected else list(ALL_QUEUES)


@worker_init.connect
def _check_database(sender: Any = None, **_: Any) -> None:
    # refuse to start against a PostgreSQL schema behind head, before taking any message
    if getattr(getattr(sender, "app", None), "main", None) == APP_NAME:
        check_schema(get_settings())


@worker_process_init.connect
def _start_process(**_: Any) -> None:
    reset_runtime()  # connections inherited through fork belong to the parent
    preload_models(models_to_preload(served_queues(get_app())))


def models_to_preload(queues: list[str]) -> list[str]:
    """A dedicated GPU worker loads its models at start; one that also serves `cpu` (`bayou worker`
    alone, the embedded worker) loads a model when a document first needs it."""
    if CPU_QUEUE in queues:
        return []
    return models_on(queues)
