"""What keeps the pipeline's own overhead low (issue #4/#5): the embedded broker's transport (WAL, waking
on a publish instead of polling once a second) and the micro-batcher's flush when no company is coming.
Behaviour only; the figures are bench/pipeline.py's and bench/api.py's."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kombu import Connection, Exchange, Queue
from sqlalchemy import text

from bayou.settings import Settings
from tests.conftest import WorkerDocuments
from workers import sqlite_broker
from workers.broker import embedded_broker_url, transport_options
from workers.microbatch import feeding_queues, nothing_coming

CPU = Queue("cpu", Exchange("cpu", type="direct"), routing_key="cpu")


@contextmanager
def _embedded(tmp_path: Path) -> Iterator[Connection]:
    options = transport_options(Settings(data_dir=tmp_path))
    with Connection(embedded_broker_url(tmp_path), transport_options=options) as connection:
        yield connection


def _publish(connection: Connection, body: dict[str, Any]) -> None:
    connection.Producer().publish(body, exchange=CPU.exchange, routing_key="cpu", declare=[CPU])


# --- the embedded broker's transport ------------------------------------------------------------------


def test_the_embedded_broker_takes_a_polling_interval_and_writes_ahead(tmp_path: Path) -> None:
    options = transport_options(Settings(data_dir=tmp_path))
    assert "polling_interval" in options
    with _embedded(tmp_path) as connection:
        channel = connection.channel()  # kombu's own channel hands polling_interval to create_engine
        assert isinstance(connection.transport, sqlite_broker.Transport)
        assert connection.transport.polling_interval == options["polling_interval"]
        journal = channel.session.execute(text("PRAGMA journal_mode")).scalar_one()
        synchronous = channel.session.execute(text("PRAGMA synchronous")).scalar_one()
        channel.session.commit()
    assert (journal, synchronous) == ("wal", 1)  # 1: NORMAL, no fsync per commit


def test_a_publish_in_this_process_wakes_the_consumer(tmp_path: Path) -> None:
    with _embedded(tmp_path) as consumer, _embedded(tmp_path) as producer:
        transport = consumer.transport
        transport.wake.clear()
        _publish(producer, {"n": 1})
        assert transport.wake.is_set()


def test_a_commit_by_another_process_is_seen_without_a_poll(tmp_path: Path) -> None:
    with _embedded(tmp_path) as connection:
        _publish(connection, {"n": 0})  # creates the file and kombu's tables
        transport = connection.transport
        before = transport._data_version()
        other = sqlite3.connect(tmp_path / "broker.db")  # as another process's connection would
        try:
            other.execute("INSERT INTO kombu_queue (name) VALUES ('elsewhere')")
            other.commit()
        finally:
            other.close()
        assert before is not None and transport._data_version() != before


def test_an_idle_consumer_looks_for_other_processes_commits_less_often(tmp_path: Path) -> None:
    from time import monotonic

    with _embedded(tmp_path) as connection:
        transport = connection.transport
        assert transport._check_every() == sqlite_broker.CHANGE_CHECK_S  # just started: busy
        transport._last_activity = monotonic() - sqlite_broker.IDLE_AFTER_S - 1
        assert transport._check_every() == sqlite_broker.CHANGE_CHECK_IDLE_S
        consumer = connection.Consumer([CPU], callbacks=[lambda body, message: message.ack()])
        consumer.consume()
        _publish(connection, {"n": 1})
        connection.drain_events(timeout=10)  # a delivery is activity: quick checks again
        assert transport._check_every() == sqlite_broker.CHANGE_CHECK_S


def test_draining_delivers_a_waiting_message_and_times_out_on_none(tmp_path: Path) -> None:
    received: list[Any] = []
    with _embedded(tmp_path) as connection:
        consumer = connection.Consumer([CPU], callbacks=[lambda body, message: received.append(body)])
        consumer.consume()
        _publish(connection, {"n": 1})
        connection.drain_events(timeout=10)
        assert received == [{"n": 1}]
        with pytest.raises(TimeoutError):  # socket.timeout: what Celery's loop expects
            connection.drain_events(timeout=0.05)


# --- the micro-batcher's flush ---------------------------------------------------------------------------


def test_a_worker_that_also_rasterises_counts_the_cpu_queue_as_company_coming() -> None:
    assert feeding_queues("gpu.800m", {"cpu", "gpu.800m", "gpu.2b"}) == ["gpu.800m", "cpu"]
    assert feeding_queues("gpu.2b", {"gpu.2b"}) == ["gpu.2b"]


class FakeChannel:
    """Stands in for a kombu virtual channel: only its queue sizes (None: it cannot tell)."""

    def __init__(self, sizes: dict[str, int] | None = None) -> None:
        self.sizes = sizes

    def _size(self, queue: str) -> int:
        if self.sizes is None:
            raise ConnectionError("broker away")
        return self.sizes.get(queue, 0)


def _message(channel: FakeChannel, queue: str = "gpu.800m") -> Any:
    return SimpleNamespace(channel=channel, delivery_info={"routing_key": queue})


def test_a_batch_is_flushed_at_once_only_when_nothing_is_waiting() -> None:
    consumed = {"cpu", "gpu.800m"}
    assert nothing_coming(_message(FakeChannel({})), consumed)
    assert not nothing_coming(_message(FakeChannel({"gpu.800m": 2})), consumed)
    assert not nothing_coming(_message(FakeChannel({"cpu": 5})), consumed)
    assert nothing_coming(_message(FakeChannel({"cpu": 5})), {"gpu.800m"})  # a GPU-only worker
    assert not nothing_coming(_message(FakeChannel(None)), consumed)  # cannot tell: the timer decides


def test_a_lone_extraction_runs_without_waiting_for_the_batch_timer(
    worker_env: Callable[..., dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers import dispatch
    from workers.embedded import start_worker_thread
    from workers.rasterizing import rasterize_stored
    from workers.runtime import check_schema, get_runtime

    # a timer that never fires within the test: only the flush on "nothing coming" can run the batch
    monkeypatch.setenv("BAYOU_BATCH_WAIT_S", "600")
    worker_env()
    runtime = get_runtime()
    check_schema(runtime.settings)
    documents = WorkerDocuments()
    document_id = documents.create(runtime, documents.png(448, 448, "white"))
    assert rasterize_stored(runtime, document_id).value == "rasterized"
    dispatch.send_extract(document_id, "gpu.800m")
    worker = start_worker_thread(sweep_every_s=3600)
    try:
        finished = documents.wait_finished(runtime, [document_id], timeout=120)
    finally:
        worker.stop()
    assert finished[document_id] in {"done", "needs_review"}
