"""The broker URL: the configured server, or the embedded broker that needs none.

The embedded broker is kombu's SQLAlchemy transport on a SQLite file in the data directory (through
`workers.sqlite_broker`, which adds WAL and wakes consumers when a message comes instead of polling once a
second). It was chosen over the filesystem transport because SQLite's `BEGIN IMMEDIATE` makes taking a
message atomic across processes, so two workers never receive the same one. It never redelivers a message
whose worker died holding it (it does give back, at a clean shutdown, those it held): the stuck-document
sweep covers that, telling a lost message from one still waiting by `waiting_document_ids`.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from contextlib import closing, contextmanager
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

log = logging.getLogger(__name__)

EMBEDDED_FILENAME = "broker.db"
# how long Redis keeps a taken, unacknowledged message before handing it to another worker; it must
# outlast the longest task, or a slow extraction would run twice
VISIBILITY_TIMEOUT_S = 2 * 60 * 60
SQLITE_LOCK_TIMEOUT_S = sqlite_broker.SQLITE_LOCK_TIMEOUT_S
# past this many waiting messages in a queue, `waiting_document_ids` does not read them (a sweep would
# fetch and decode tens of megabytes) and answers that it cannot tell
MAX_WAITING_READ = 50_000
# messages per LRANGE: a few hundred kilobytes a round trip, never the whole list at once
REDIS_CHUNK = 1_000


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


class _CannotTell(Exception):
    """What waits in a queue cannot be read. Its text never holds any of a message's content."""


def waiting_document_ids(
    app: Celery, settings: Settings, queue: str, *, limit: int | None = None
) -> set[str] | None:
    """The documents of the messages waiting in `queue`, not yet taken (a task message's first positional
    argument: every document task takes its document's id first; a message without one adds nothing).
    None when it cannot tell: more than `limit` messages wait, one of them cannot be read, or the broker's
    waiting messages cannot be read without taking them (neither embedded nor Redis). `limit` defaults to
    MAX_WAITING_READ. Logs no payload."""
    limit = MAX_WAITING_READ if limit is None else limit
    # counted first (cheap, and what any broker can say): an empty queue needs no reading, and a long
    # backlog is never read
    backlog = waiting_messages(app, settings, queue)
    if not backlog:
        return set()
    if backlog > limit:
        log.info("queue %s holds more than %d waiting messages: not read", queue, limit)
        return None
    try:
        return _document_ids(_waiting_payloads(app, settings, queue), limit)  # None: it grew meanwhile
    except _CannotTell as reason:
        log.warning("the messages waiting in queue %s cannot be told apart: %s", queue, reason)
        return None


def held_document_ids(app: Celery, settings: Settings, queue: str) -> set[str] | None:
    """The documents of the messages from `queue` that workers have taken and not yet acknowledged (in
    hand, prefetched, running, or waiting out a retry's countdown). Redis keeps these in its `unacked`
    hash; None where the broker cannot say (the embedded broker marks a taken message, not who holds it
    or whether that worker lives) or a message cannot be read. Logs no payload."""
    if is_embedded(settings):
        return None
    try:
        return _document_ids(_redis_held_payloads(app, queue), MAX_WAITING_READ)
    except _CannotTell as reason:
        log.warning("the messages held from queue %s cannot be told apart: %s", queue, reason)
        return None


def _document_ids(payloads: Iterator[str | bytes] | Iterator[dict[str, Any]], limit: int) -> set[str] | None:
    """The first arguments of `payloads`' messages; None past `limit` messages. _CannotTell as
    `_first_argument` raises it."""
    ids: set[str] = set()
    with closing(payloads):
        for read, payload in enumerate(payloads, start=1):
            if read > limit:
                return None
            document_id = _first_argument(payload)
            if document_id is not None:
                ids.add(document_id)
    return ids


def _redis_held_payloads(app: Celery, queue: str) -> Iterator[dict[str, Any]]:
    with _redis_channel(app) as channel:
        # kombu records a taken message as `[message, exchange, routing key]` under its delivery tag
        for entry in channel.client.hvals(channel.unacked_key):
            try:
                message, _exchange, routing_key = json.loads(entry)
            except (ValueError, TypeError) as error:
                raise _CannotTell(
                    f"an unacknowledged message could not be decoded ({type(error).__name__})"
                ) from None
            if routing_key == queue:
                yield message


def _waiting_payloads(app: Celery, settings: Settings, queue: str) -> Iterator[str | bytes]:
    if is_embedded(settings):
        yield from _embedded_payloads(settings, queue)
    else:
        yield from _redis_payloads(app, queue)


def _embedded_payloads(settings: Settings, queue: str) -> Iterator[str]:
    with _embedded_messages(settings) as engine:
        if engine is None:
            return
        # one statement, so one snapshot of the (WAL) file: a message taken meanwhile still counts as
        # waiting (its document is left alone, the safe side)
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT m.payload FROM kombu_message m JOIN kombu_queue q ON m.queue_id = q.id "
                    "WHERE m.visible = 1 AND q.name = :queue"
                ),
                {"queue": queue},
            )
            for (payload,) in rows:
                yield payload


def _redis_payloads(app: Celery, queue: str) -> Iterator[bytes]:
    with _redis_channel(app) as channel:
        # a queue is a list per priority step, the queue's own name for priority 0 (all Celery sends):
        # the same lists kombu counts for `waiting_counts`
        keys = dict.fromkeys(channel._q_for_pri(queue, step) for step in channel.priority_steps)
        for key in keys:
            yield from _list_items(channel.client, key)


@contextmanager
def _redis_channel(app: Celery) -> Iterator[Any]:
    """The broker's kombu Redis channel, for reading its lists and its unacked set as they are."""
    # imported here: it loads redis-py (a tenth of a second), which the embedded defaults never need
    from kombu.transport import redis as kombu_redis

    with app.connection_for_read() as connection:
        channel = connection.default_channel
        if not isinstance(channel, kombu_redis.Channel):
            raise _CannotTell(f"a {connection.transport.driver_type} broker's messages are not read")
        if channel.global_keyprefix:
            # kombu's prefixing client prefixes only the commands it uses itself, not LRANGE or HVALS;
            # bayou sets no prefix, so rather than second-guess it this answers "cannot tell"
            raise _CannotTell("the broker's keys have a global prefix")
        yield channel


def _list_items(client: Any, key: str) -> Iterator[bytes]:
    # kombu pushes on the left and workers pop on the right: read from the left, a push meanwhile only
    # shifts items still to read further on (some are read twice, none missed), and a pop takes only
    # messages no longer waiting
    start = 0
    while True:
        chunk = client.lrange(key, start, start + REDIS_CHUNK - 1)
        yield from chunk
        if len(chunk) < REDIS_CHUNK:
            return
        start += REDIS_CHUNK


def _first_argument(payload: str | bytes | dict[str, Any]) -> str | None:
    """A kombu message's task, Celery protocol 2: an envelope (JSON text, or already decoded) whose `body`
    is the base64 of the JSON `[args, kwargs, embed]`. The first of `args` (None when there are none);
    _CannotTell otherwise."""
    try:
        envelope = payload if isinstance(payload, dict) else json.loads(payload)
        if envelope["content-type"] != "application/json":
            raise _CannotTell("a waiting message is not JSON")
        if envelope["properties"]["body_encoding"] != "base64":
            raise _CannotTell("a waiting message's body is not base64")
        body = json.loads(base64.b64decode(envelope["body"], validate=True))
    except (ValueError, TypeError, KeyError) as error:  # JSON, base64, UTF-8, or not the envelope's shape
        # `from None`: a decoding error carries the text it choked on
        raise _CannotTell(f"a waiting message could not be decoded ({type(error).__name__})") from None
    if not (isinstance(body, list) and len(body) == 3 and isinstance(body[0], list)):
        raise _CannotTell("a waiting message is not a Celery protocol-2 task")
    args = body[0]
    if not args:
        return None  # a task about no document (a beat-sent sweep)
    if not isinstance(args[0], str):
        raise _CannotTell("a waiting message's first argument is not an id")
    return args[0]


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
