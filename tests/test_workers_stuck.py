"""The stuck-document sweep under load: a document whose own message still waits is left alone, one whose
message was lost is sent again however many other messages its queue holds, and where the waiting
messages cannot be told apart (unreadable, too many) the sweep leaves the queue's documents alone. On the
embedded broker and on Redis, each read as the workers' own queues are (real messages, real stores)."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from kombu import Producer
from sqlalchemy import update

from storage.columns import utcnow
from storage.documents import set_status
from storage.models import Document, DocumentStatus
from tests.conftest import WorkerDocuments
from workers import broker
from workers.app import get_app
from workers.broker import held_document_ids, waiting_document_ids, waiting_messages
from workers.dispatch import send_extract, send_rasterize
from workers.names import REQUEUE_STUCK_TASK
from workers.runtime import Runtime, check_schema, get_runtime
from workers.stuck import requeue_stuck

S = DocumentStatus
BROKERS = ["embedded", pytest.param("redis", marks=pytest.mark.redis)]
# in a message that must not be decoded: it may never reach a log line
MARKER = "FIELD-VALUE-7f3a"


@pytest.fixture(params=BROKERS)
def runtime(request: pytest.FixtureRequest, worker_env: Callable[..., dict[str, str]]) -> Runtime:
    """The worker runtime (SQLite in the data dir) on the embedded broker or on a Redis database of the
    test's own (emptied before and after); no worker runs, so every message sent stays waiting."""
    redis_url = request.getfixturevalue("redis_broker_url") if request.param == "redis" else ""
    worker_env(broker_url=redis_url)
    runtime = get_runtime()
    check_schema(runtime.settings)
    return runtime


def _create(runtime: Runtime, seed: int) -> str:
    return WorkerDocuments.create(runtime, f"scan {seed}".encode())


def _rasterized(runtime: Runtime, document_id: str) -> None:
    """As a worker leaves it once the pages are stored: only the extraction is left (on gpu.800m)."""
    with runtime.sessions() as session:
        set_status(session, document_id, S.PROCESSING)
        session.execute(update(Document).where(Document.id == document_id).values(pages=1))
        session.commit()


def _age(runtime: Runtime, *document_ids: str, seconds: float = 120) -> None:
    with runtime.sessions() as session:
        session.execute(
            update(Document)
            .where(Document.id.in_(document_ids))
            .values(updated_at=utcnow() - timedelta(seconds=seconds))
        )
        session.commit()


def _waiting(runtime: Runtime, queue: str) -> set[str] | None:
    return waiting_document_ids(get_app(), runtime.settings, queue)


def _count(runtime: Runtime, queue: str) -> int:
    return waiting_messages(get_app(), runtime.settings, queue)


def _publish_raw(body: Any, *, content_type: str, queue: str = "cpu") -> None:
    """A message that is no task of ours, put in `queue` as any client could."""
    with get_app().connection_for_write() as connection:
        Producer(connection).publish(
            body, exchange="", routing_key=queue, content_type=content_type, content_encoding="utf-8"
        )


# --- the sweep reads what waits ---


def test_a_document_whose_message_waits_is_left_alone_while_a_lost_one_is_resent(
    runtime: Runtime,
) -> None:
    waits, lost, busy, waits_gpu, lost_gpu = (_create(runtime, seed) for seed in range(5))
    for document_id in (waits_gpu, lost_gpu):
        _rasterized(runtime, document_id)
    # the queues are never empty (a constant load): other documents' messages and the stale ones' own
    send_rasterize(waits, "gpu.800m", app=get_app())
    send_rasterize(busy, "gpu.800m", app=get_app())
    send_extract(waits_gpu, "gpu.800m", app=get_app())
    send_extract("doc_another", "gpu.800m", app=get_app())
    _age(runtime, waits, lost, waits_gpu, lost_gpu)

    resent = requeue_stuck(older_than_s=60)

    # the old sweep re-sent nothing while the queues held anything: a lost message waited for a quiet hour
    assert sorted(resent) == sorted([lost, lost_gpu])
    assert _waiting(runtime, "cpu") == {waits, busy, lost}
    assert _count(runtime, "cpu") == 3  # `waits` still has its one message
    assert _waiting(runtime, "gpu.800m") == {waits_gpu, "doc_another", lost_gpu}
    assert _count(runtime, "gpu.800m") == 3
    assert requeue_stuck(older_than_s=60) == []  # moved on: the next sweep gives the new messages time

    _age(runtime, lost, lost_gpu)
    assert requeue_stuck(older_than_s=60) == []  # their new messages wait now


def test_messages_about_no_document_do_not_stop_the_sweep(runtime: Runtime) -> None:
    lost = _create(runtime, 0)
    _age(runtime, lost)
    # what beat sends to the default queue: keyword arguments only
    get_app().send_task(REQUEUE_STUCK_TASK, kwargs={"older_than_s": 1800}, queue="cpu")

    assert _waiting(runtime, "cpu") == set()
    assert requeue_stuck(older_than_s=60) == [lost]


def test_an_empty_queue_is_read_as_holding_nothing(runtime: Runtime) -> None:
    assert _waiting(runtime, "cpu") == set()
    assert _waiting(runtime, "gpu.2b") == set()


# --- where it cannot tell, it holds back ---


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (f"not a task: {MARKER}", "text/plain"),
        (f"{{not json: {MARKER}", "application/json"),
        (json.dumps({"args": [MARKER], "kwargs": {}}), "application/json"),  # protocol 1's shape
        (json.dumps([[42, MARKER], {}, {}]), "application/json"),  # a first argument that is no id
        (json.dumps([MARKER, {}, {}]), "application/json"),
    ],
    ids=["text", "broken-json", "protocol-1", "not-an-id", "args-not-a-list"],
)
def test_an_unreadable_waiting_message_makes_the_sweep_hold_back_that_queue(
    runtime: Runtime, body: str, content_type: str, caplog: pytest.LogCaptureFixture
) -> None:
    lost, lost_gpu = _create(runtime, 0), _create(runtime, 1)
    _rasterized(runtime, lost_gpu)
    _age(runtime, lost, lost_gpu)
    _publish_raw(body, content_type=content_type, queue="cpu")
    send_extract("doc_another", "gpu.800m", app=get_app())

    with caplog.at_level(logging.DEBUG):
        resent = requeue_stuck(older_than_s=60)

    # its document's message may be the one it could not read; gpu.800m could be read, and is swept
    assert resent == [lost_gpu]
    assert _waiting(runtime, "cpu") is None
    assert "cannot be told apart" in caplog.text
    # neither what the message holds nor the message as stored (its body in base64) is logged
    assert MARKER not in caplog.text
    assert base64.b64encode(body.encode()).decode() not in caplog.text

    with get_app().connection_for_write() as connection:
        connection.default_channel.queue_purge("cpu")
    assert requeue_stuck(older_than_s=60) == [lost]  # nothing waits: nothing to be unsure of


def test_past_the_cap_the_waiting_messages_are_not_read(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = [f"doc_waiting{n}" for n in range(3)]
    for document_id in sent:
        send_rasterize(document_id, "gpu.800m", app=get_app())

    assert waiting_document_ids(get_app(), runtime.settings, "cpu", limit=3) == set(sent)
    assert waiting_document_ids(get_app(), runtime.settings, "cpu", limit=2) is None

    lost = _create(runtime, 0)
    _age(runtime, lost)
    monkeypatch.setattr(broker, "MAX_WAITING_READ", 2)
    assert requeue_stuck(older_than_s=60) == []  # too many to read: held back as for any backlog
    monkeypatch.setattr(broker, "MAX_WAITING_READ", 3)
    assert requeue_stuck(older_than_s=60) == [lost]


def test_a_queue_longer_than_a_read_is_read_whole(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    # Redis is read a chunk at a time: a queue of a few chunks and a bit must come back whole
    monkeypatch.setattr(broker, "REDIS_CHUNK", 2)
    sent = [f"doc_waiting{n}" for n in range(5)]
    for document_id in sent:
        send_rasterize(document_id, "gpu.800m", app=get_app())

    assert _waiting(runtime, "cpu") == set(sent)


def test_a_broker_whose_queue_cannot_be_read_is_held_back_only_while_it_holds_messages(
    worker_env: Callable[..., dict[str, str]],
) -> None:
    # kombu's in-memory transport stands in for a server broker other than Redis (RabbitMQ, say): its
    # count is known, its messages cannot be looked at without taking them
    worker_env(broker_url="memory://")
    runtime = get_runtime()
    check_schema(runtime.settings)
    lost = _create(runtime, 0)
    _age(runtime, lost)
    with get_app().connection_for_write() as connection:
        connection.default_channel.queue_purge("cpu")  # the in-memory queues outlive an app
    send_rasterize("doc_another", "gpu.800m", app=get_app())

    assert _waiting(runtime, "cpu") is None
    assert requeue_stuck(older_than_s=60) == []

    with get_app().connection_for_write() as connection:
        connection.default_channel.queue_purge("cpu")
    assert _waiting(runtime, "cpu") == set()
    assert requeue_stuck(older_than_s=60) == [lost]
    with get_app().connection_for_write() as connection:
        connection.default_channel.queue_purge("cpu")  # left empty for whoever uses it next


# --- Redis: a message neither waiting nor held is re-sent sooner ---


@pytest.mark.redis
def test_on_redis_a_message_neither_waiting_nor_held_is_resent_after_minutes(
    redis_broker_url: str, worker_env: Callable[..., dict[str, str]]
) -> None:
    from workers.stuck import LOST_AFTER_S

    worker_env(broker_url=redis_broker_url)
    runtime = get_runtime()
    check_schema(runtime.settings)
    in_hand, waits, lost, queued_lost = (_create(runtime, seed) for seed in range(4))
    for document_id in (in_hand, waits, lost):
        _rasterized(runtime, document_id)
    send_extract(in_hand, "gpu.800m", app=get_app())  # first in: what the worker below takes
    send_extract(waits, "gpu.800m", app=get_app())
    # untouched past LOST_AFTER_S, well before stuck_after_s: `lost` lost its extraction, `queued_lost`
    # its rasterisation (never sent: the broker was down when it was uploaded)
    _age(runtime, in_hand, waits, lost, queued_lost, seconds=LOST_AFTER_S + 60)
    with get_app().connection_for_read() as connection:
        channel = connection.channel()
        # a worker takes the oldest message and holds it: kombu records it in Redis's unacked set, as for
        # any worker's message in hand (prefetched, running, or waiting out a retry's countdown)
        assert channel.basic_get("gpu.800m", no_ack=False) is not None
        assert held_document_ids(get_app(), runtime.settings, "gpu.800m") == {in_hand}
        assert _waiting(runtime, "gpu.800m") == {waits}

        resent = requeue_stuck(older_than_s=1800)

        assert sorted(resent) == sorted([lost, queued_lost])
    # the holder went away without acknowledging (its message back in the queue) and the re-sent wait:
    # nothing more to re-send
    assert requeue_stuck(older_than_s=1800) == []


def test_on_the_embedded_broker_a_message_not_waiting_waits_for_stuck_after(
    worker_env: Callable[..., dict[str, str]],
) -> None:
    from workers.stuck import LOST_AFTER_S

    worker_env()
    runtime = get_runtime()
    check_schema(runtime.settings)
    lost = _create(runtime, 0)
    _age(runtime, lost, seconds=LOST_AFTER_S + 60)
    # who holds a taken message (a live worker or a dead one) the embedded broker cannot say
    assert requeue_stuck(older_than_s=1800) == []
    assert requeue_stuck(older_than_s=LOST_AFTER_S) == [lost]
