"""The broker URL: the configured server, or the embedded broker that needs none.

The embedded broker is kombu's SQLAlchemy transport on a SQLite file in the data directory (through
`workers.sqlite_broker`, which adds WAL and wakes consumers when a message comes instead of polling once a
second). It was chosen over the filesystem transport because SQLite's `BEGIN IMMEDIATE` makes taking a
message atomic across processes, so two workers never receive the same one. It never redelivers a message
whose worker died holding it (it does give back, at a clean shutdown, those it held): the stuck-document
sweep covers that.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from celery import Celery
from kombu.exceptions import ChannelError
from sqlalchemy import Engine, create_engine, inspect, text

from bayou.settings import Settings
from workers import sqlite_broker

# kombu finds a URL's transport by alias only: every process that builds the URL below knows it
sqlite_broker.register()

EMBEDDED_FILENAME = "broker.db"
# how long Redis keeps a taken, unacknowledged message before handing it to another worker; it must
# outlast the longest task, or a slow extraction would run twice
VISIBILITY_TIMEOUT_S = 2 * 60 * 60
SQLITE_LOCK_TIMEOUT_S = sqlite_broker.SQLITE_LOCK_TIMEOUT_S


def embedded_broker_url(data_dir: Path) -> str:
    return f"{sqlite_broker.ALIAS}+sqlite:///{Path(data_dir).resolve() / EMBEDDED_FILENAME}"


def broker_url(settings: Settings) -> str:
    return settings.broker_url or embedded_broker_url(settings.data_dir)


def is_embedded(settings: Settings) -> bool:
    return not settings.broker_url


def transport_options(settings: Settings) -> dict[str, Any]:
    if is_embedded(settings):
        # kombu hands the rest to SQLAlchemy's create_engine (our transport keeps `polling_interval`
        # back): several processes share the file, and a writer waits for another's lock rather than
        # failing at once
        return {
            "connect_args": {"timeout": SQLITE_LOCK_TIMEOUT_S},
            "polling_interval": sqlite_broker.POLLING_INTERVAL_S,
        }
    return {"visibility_timeout": VISIBILITY_TIMEOUT_S}


def prepare_embedded(settings: Settings) -> None:
    """The embedded broker's SQLite file lives in the data directory, which may not exist yet."""
    if is_embedded(settings):
        Path(settings.data_dir).mkdir(parents=True, exist_ok=True)


def prune_embedded_broker(settings: Settings, *, older_than_s: float) -> int:
    """Deletes messages taken more than `older_than_s` ago from the embedded broker; returns how many.

    kombu's SQLAlchemy transport marks a taken message invisible and never deletes it, acknowledged or
    not, so the file would grow by a row per task forever. A taken row is never read again: a message
    given back at shutdown is written anew from the worker's memory."""
    # kombu stamps the row with naive local time when a worker takes it
    cutoff = datetime.now() - timedelta(seconds=older_than_s)
    with _embedded_messages(settings) as engine:
        if engine is None:
            return 0
        with engine.begin() as connection:
            deleted = connection.execute(
                text("DELETE FROM kombu_message WHERE visible = 0 AND timestamp <= :cutoff"),
                {"cutoff": cutoff},
            )
        return deleted.rowcount


def waiting_messages(app: Celery, settings: Settings, queue: str) -> int:
    """Messages in `queue` that no worker has taken yet."""
    return waiting_counts(app, settings, [queue])[queue]


def waiting_counts(app: Celery, settings: Settings, queues: list[str]) -> dict[str, int]:
    """Messages not yet taken, per queue, over one broker connection."""
    if not is_embedded(settings):
        with app.connection_for_read() as connection:
            return {queue: _declared_count(connection.default_channel, queue) for queue in queues}
    # kombu's own count for this transport includes every message ever taken (see prune_embedded_broker)
    with _embedded_messages(settings) as engine:
        if engine is None:
            return dict.fromkeys(queues, 0)
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT q.name, count(*) FROM kombu_message m JOIN kombu_queue q ON m.queue_id = q.id "
                    "WHERE m.visible = 1 GROUP BY q.name"
                )
            )
            counts = {name: count for name, count in rows}
    return {queue: int(counts.get(queue, 0)) for queue in queues}


def _declared_count(channel: Any, queue: str) -> int:
    try:
        return channel.queue_declare(queue, passive=True).message_count
    except ChannelError:  # Redis drops an empty list: no queue is an empty queue
        return 0


@contextmanager
def _embedded_messages(settings: Settings) -> Iterator[Engine | None]:
    """The embedded broker's database, or None when there is none (yet) or the broker is a server."""
    path = Path(settings.data_dir) / EMBEDDED_FILENAME
    if not is_embedded(settings) or not path.exists():
        yield None
        return
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": SQLITE_LOCK_TIMEOUT_S})
    try:
        yield engine if inspect(engine).has_table("kombu_message") else None
    finally:
        engine.dispose()
