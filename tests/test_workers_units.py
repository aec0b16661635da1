"""The workers' parts on their own: routing, configuration, the stuck-document sweep, failure handling,
the out-of-memory retry, and `bayou worker`'s refusals."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from celery.exceptions import SoftTimeLimitExceeded
from PIL import Image
from sqlalchemy import update
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from bayou.settings import Settings
from storage.columns import utcnow
from storage.documents import create_document, get_document_fresh, set_status
from storage.models import Document, DocumentStatus
from workers.app import celery_config, get_app, models_to_preload
from workers.broker import embedded_broker_url
from workers.queues import ALL_QUEUES, extract_queue, parse_queues
from workers.runtime import Runtime, check_schema, get_runtime
from workers.stuck import requeue_stuck
from workers.transient import fewer_tiles, is_out_of_memory

S = DocumentStatus


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (448, 448), "white").save(buffer, format="PNG")
    return buffer.getvalue()


def _create(runtime: Runtime, data: bytes | None = None) -> str:
    with runtime.sessions() as session:
        document, _ = create_document(
            session,
            runtime.blobs,
            stream_or_path=io.BytesIO(data or _png()),
            filename="scan.png",
            media_type="image/png",
            doc_type="receipt",
        )
    return document.id


def _status(runtime: Runtime, document_id: str) -> Document:
    with runtime.sessions() as session:
        return get_document_fresh(session, document_id)


# --- routing and configuration ---


@pytest.mark.parametrize(
    ("model", "doc_type", "queue"),
    [
        ("h2ovl-800m", "check", "gpu.800m"),
        ("h2ovl-2b", "receipt", "gpu.2b"),
        (None, "receipt", "gpu.800m"),  # the type's default model
        (None, "drivers_license", "gpu.2b"),
        (None, "check", "gpu.2b"),
        ("/models/my-finetune", "receipt", "gpu.800m"),  # a checkpoint directory shares the small queue
    ],
)
def test_a_document_goes_to_its_models_queue(model: str | None, doc_type: str, queue: str) -> None:
    assert extract_queue(model, doc_type, Settings()) == queue


def test_queue_lists_are_checked() -> None:
    assert parse_queues("") == list(ALL_QUEUES)
    assert parse_queues(" gpu.2b, cpu ") == ["gpu.2b", "cpu", "callbacks"]  # cpu brings callbacks along
    assert parse_queues("callbacks") == ["callbacks"]
    with pytest.raises(ValueError, match="gpu.7b"):
        parse_queues("cpu,gpu.7b")


def test_only_a_dedicated_gpu_worker_loads_its_model_at_start() -> None:
    assert models_to_preload(["gpu.2b"]) == ["h2ovl-2b"]
    assert models_to_preload(["gpu.800m", "gpu.2b"]) == ["h2ovl-800m", "h2ovl-2b"]
    assert models_to_preload(list(ALL_QUEUES)) == []
    assert models_to_preload(["cpu"]) == []


def test_out_of_memory_retries_halve_the_tiles_down_to_one() -> None:
    import torch

    assert [fewer_tiles(None), fewer_tiles(3), fewer_tiles(1)] == [3, 1, None]
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory"))
    assert not is_out_of_memory(MemoryError())


def test_the_celery_configuration_is_the_reliable_one(tmp_path: Path) -> None:
    config = celery_config(Settings(data_dir=tmp_path))
    # kombu's SQLAlchemy transport, through our subclass (workers.sqlite_broker), on the data dir's file
    assert config["broker_url"] == f"bayousqlite+sqlite:///{tmp_path.resolve()}/broker.db"
    assert config["broker_url"] == embedded_broker_url(tmp_path)
    assert (config["task_acks_late"], config["task_reject_on_worker_lost"]) == (True, True)
    assert config["worker_prefetch_multiplier"] == 1
    assert (config["task_serializer"], config["accept_content"]) == ("json", ["json"])
    assert config["task_ignore_result"] is True
    assert [queue.name for queue in config["task_queues"]] == ["cpu", "callbacks", "gpu.800m", "gpu.2b"]
    server = celery_config(Settings(data_dir=tmp_path, broker_url="redis://example:6379/0"))
    assert server["broker_url"] == "redis://example:6379/0"


def test_tasks_have_time_limits_and_bounded_retries(worker_env: Callable[..., dict[str, str]]) -> None:
    worker_env()
    tasks = get_app().tasks
    for name in ("bayou.rasterize", "bayou.extract"):
        task = tasks[name]
        assert 0 < task.soft_time_limit < task.time_limit
        assert task.max_retries == 5
        assert OperationalError in task.autoretry_for


# --- failures that are not the document's ---


def test_an_unexpected_error_fails_the_document_and_a_transient_one_leaves_it(
    worker_runtime: Runtime,
) -> None:
    runtime = worker_runtime
    extract = get_app().tasks["bayou.extract"]
    timed_out, flaky, broken = (_create(runtime, _png()[:-i]) for i in (1, 2, 3))
    with runtime.sessions() as session:
        for document_id in (timed_out, flaky, broken):
            set_status(session, document_id, S.PROCESSING)

    extract.on_failure(SoftTimeLimitExceeded(), "t1", [timed_out], {}, None)
    extract.on_failure(OperationalError("SELECT 1", {}, Exception("server closed")), "t2", [flaky], {}, None)
    extract.on_failure(KeyError("bug"), "t3", [broken], {}, None)

    assert (_status(runtime, timed_out).status, _status(runtime, timed_out).error_code) == (
        "failed",
        "timeout",
    )
    assert _status(runtime, flaky).status == "processing"  # left for the stuck sweep
    assert _status(runtime, broken).error_code == "internal_error"


class OutOfMemoryBeyondOneTileEngine:
    """FAKE standing in for a GPU that runs out of memory (no GPU here): raises CUDA's OOM error unless
    the request allows a single tile, then hands over to the real tiny-checkpoint engine."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.name = real.name
        self.revision = real.revision
        self.tiles_asked: list[int | None] = []

    def fit(self, request: Any) -> Any:
        return self.real.fit(request)

    def budget_shortfalls(self, max_new_tokens: int) -> dict[str, int]:
        return self.real.budget_shortfalls(max_new_tokens)

    def run(self, requests: list[Any]) -> list[Any]:
        import torch

        self.tiles_asked += [request.max_tiles for request in requests]
        if any(request.max_tiles != 1 for request in requests):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (fake)")
        return self.real.run(requests)


def test_running_out_of_gpu_memory_retries_with_fewer_tiles(
    embedded_worker: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bayou.engines
    import workers.tasks
    from workers.dispatch import enqueue

    fake = OutOfMemoryBeyondOneTileEngine(bayou.engines.get_engine("h2ovl-800m"))
    monkeypatch.setattr(bayou.engines, "get_engine", lambda name, settings=None: fake)
    monkeypatch.setattr(workers.tasks, "OOM_RETRY_DELAY_S", 0)
    document_id = _create(embedded_worker)

    enqueue(document_id, model=None, doc_type="receipt")
    document = _wait(embedded_worker, document_id)

    assert fake.tiles_asked == [None, 3, 1]
    assert document.status in ("done", "needs_review")


def _wait(runtime: Runtime, document_id: str, timeout: float = 60) -> Document:
    import time

    deadline = time.monotonic() + timeout
    while (document := _status(runtime, document_id)).status in ("queued", "processing"):
        assert time.monotonic() < deadline, f"still {document.status}"
        time.sleep(0.2)
    return document


# --- the stuck-document sweep ---


def _age(runtime: Runtime, document_id: str, seconds: float) -> None:
    with runtime.sessions() as session:
        session.execute(
            update(Document)
            .where(Document.id == document_id)
            .values(updated_at=utcnow() - timedelta(seconds=seconds))
        )
        session.commit()


def _queued_messages(queue: str) -> int:
    from workers.broker import waiting_messages

    return waiting_messages(get_app(), get_runtime().settings, queue)


def test_the_sweep_resends_only_documents_stuck_past_the_deadline(
    worker_runtime: Runtime,
) -> None:
    runtime = worker_runtime
    fresh, stale_queued, stale_rasterized, finished = (_create(runtime, _png()[:-i]) for i in (1, 2, 3, 4))
    with runtime.sessions() as session:
        set_status(session, stale_rasterized, S.PROCESSING)
        session.execute(update(Document).where(Document.id == stale_rasterized).values(pages=1))
        session.commit()
        set_status(session, finished, S.PROCESSING)
        set_status(session, finished, S.FAILED, error_code="corrupt_file")
    for document_id in (stale_queued, stale_rasterized, finished):
        _age(runtime, document_id, 120)

    resent = requeue_stuck(older_than_s=60)

    assert sorted(resent) == sorted([stale_queued, stale_rasterized])
    assert _queued_messages("cpu") == 1  # rasterise again
    assert _queued_messages("gpu.800m") == 1  # pages are there: only the extraction
    assert requeue_stuck(older_than_s=60) == []  # the sweep moved them on; the next one waits again

    for document_id in (stale_queued, stale_rasterized):
        _age(runtime, document_id, 120)
    # their queues hold messages (as in a long backlog): theirs may be among them
    assert requeue_stuck(older_than_s=60) == []
    with get_app().connection_for_write() as connection:
        for queue in ("cpu", "gpu.800m"):
            connection.default_channel.queue_purge(queue)
    assert sorted(requeue_stuck(older_than_s=60)) == sorted([stale_queued, stale_rasterized])


# --- `bayou worker` refusals (no worker starts) ---


def _cli() -> typer.Typer:
    from bayou.cli.worker import register

    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    return app


def test_bayou_worker_refuses_an_unknown_queue(worker_env: Callable[..., dict[str, str]]) -> None:
    worker_env()
    result = CliRunner().invoke(_cli(), ["worker", "--queues", "cpu,gpu.70b"])
    assert result.exit_code == 2
    assert "gpu.70b" in result.output


@pytest.mark.postgres
def test_bayou_worker_refuses_a_postgresql_schema_behind_head(
    worker_env: Callable[..., dict[str, str]], postgres_database_factory: Callable[[], str]
) -> None:
    worker_env(database_url=postgres_database_factory())
    result = CliRunner().invoke(_cli(), ["worker", "--queues", "cpu"])
    assert result.exit_code == 2
    assert "bayou db upgrade" in result.output


def test_the_embedded_broker_forgets_messages_once_taken(embedded_worker: Runtime) -> None:
    from sqlalchemy import create_engine, text

    from workers.broker import prune_embedded_broker
    from workers.dispatch import enqueue

    document_id = _create(embedded_worker)
    enqueue(document_id, model=None, doc_type="receipt")
    assert _wait(embedded_worker, document_id).status in ("done", "needs_review")
    broker = create_engine(f"sqlite:///{embedded_worker.settings.data_dir / 'broker.db'}")

    def rows() -> int:
        with broker.connect() as connection:
            return connection.execute(text("SELECT count(*) FROM kombu_message")).scalar_one()

    assert rows() == 2  # rasterise and extract, both taken, both still there
    assert prune_embedded_broker(embedded_worker.settings, older_than_s=3600) == 0
    assert prune_embedded_broker(embedded_worker.settings, older_than_s=0) == 2
    assert rows() == 0
    broker.dispose()


# --- a broker that cannot take a message (issue #4) ---


def _publish_on_a_closed_channel() -> None:
    """The genuine error of kombu publishing on a channel its own reconnect has closed (issue #4), raised
    by kombu's code: its in-memory transport here, where Redis's fails on the same None."""
    from kombu import Connection

    with Connection("memory://") as connection:
        channel = connection.channel()
        channel.close()
        channel.basic_publish(channel.prepare_message("{}"), exchange="cpu", routing_key="cpu")


class FlakyBroker:
    """FAKE `Celery.send_task` standing in for a broker restarting (no restart here): the first `failures`
    sends fail inside kombu as in issue #4, later ones are recorded as sent."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[tuple[str, list[Any]]] = []

    def __call__(self, name: str, args: list[Any] | None = None, **options: Any) -> None:
        if self.failures:
            self.failures -= 1
            _publish_on_a_closed_channel()
        self.sent.append((name, list(args or [])))


def _page_rows(runtime: Runtime, document_id: str) -> int:
    from sqlalchemy import func, select

    from storage.models import Page

    with runtime.sessions() as session:
        return session.scalar(select(func.count()).where(Page.document_id == document_id))


def test_an_error_inside_the_broker_client_is_a_transient_broker_unavailable(
    worker_env: Callable[..., dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from kombu.exceptions import OperationalError as BrokerOperationalError

    from workers.dispatch import BrokerUnavailable, send_extract
    from workers.transient import TRANSIENT_ERRORS

    worker_env()
    app = get_app()
    monkeypatch.setattr(app, "send_task", FlakyBroker(failures=1))

    with pytest.raises(BrokerUnavailable) as raised:
        send_extract("doc_1", "gpu.800m", app=app)

    assert isinstance(raised.value.__cause__, AttributeError)
    # what the API already answers 503 for, and what the tasks retry
    assert isinstance(raised.value, BrokerOperationalError)
    assert isinstance(raised.value, TRANSIENT_ERRORS)


def _fails_once(method: Callable[..., Any]) -> Callable[..., Any]:
    import redis

    calls: list[int] = []

    def once(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise redis.exceptions.ConnectionError("Connection closed by server. (injected)")
        return method(*args, **kwargs)

    return once


@pytest.mark.redis
def test_kombus_publish_on_the_channel_its_own_reconnect_closed_is_a_broker_unavailable(
    worker_env: Callable[..., dict[str, str]], redis_broker_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue #4 as it happens, on a real Redis: the publish fails (the server went away), kombu reconnects
    and publishes again, declaring the queue anew; that declaration fails too (the server still starting),
    and the nested reconnect closes the channel the publish then uses."""
    from kombu.transport import redis as kombu_redis

    from workers.dispatch import BrokerUnavailable, send_extract

    worker_env(broker_url=redis_broker_url)
    app = get_app()
    send_extract("doc_1", "gpu.800m", app=app)  # the queue is declared, and remembered, on this connection
    # FAKE faults (no restart here): each of these fails once as it does while Redis restarts
    for name in ("_put", "_queue_bind"):
        monkeypatch.setattr(kombu_redis.Channel, name, _fails_once(getattr(kombu_redis.Channel, name)))

    try:
        send_extract("doc_1", "gpu.800m", app=app)
    except BrokerUnavailable as unavailable:  # kombu 5.7: its AttributeError, from its closed channel
        assert isinstance(unavailable.__cause__, AttributeError)
    # (a kombu that survives its own reconnect simply sends it; anything else escaping fails the test)
    send_extract("doc_1", "gpu.800m", app=app)  # as the task's retry does: the client has recovered


def _our_own_bug(*_: Any, **__: Any) -> None:
    raise AttributeError("'NoneType' object has no attribute 'client'")  # same words, but ours


def test_a_mistake_of_the_sender_is_not_taken_for_the_broker(
    worker_env: Callable[..., dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from celery.exceptions import QueueNotFound
    from kombu.exceptions import EncodeError

    from workers.dispatch import send_extract, send_extract_alone

    worker_env()
    app = get_app()
    with pytest.raises(QueueNotFound):  # raised by Celery's routing, before any broker is asked
        send_extract("doc_1", "gpu.no-such-model", app=app)
    with pytest.raises(EncodeError):  # raised by kombu's serialisation: the message is at fault
        send_extract_alone("doc_1", "gpu.800m", max_tiles=object(), app=app)  # type: ignore[arg-type]
    monkeypatch.setattr(app, "send_task", _our_own_bug)
    with pytest.raises(AttributeError):
        send_extract("doc_1", "gpu.800m", app=app)


def test_a_rasterisation_whose_extraction_cannot_be_sent_is_retried_and_sends_it_once(
    worker_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    import extractor.pipeline
    from workers.names import EXTRACT_BATCH_TASK

    runtime = worker_runtime
    app = get_app()
    broker = FlakyBroker(failures=2)
    monkeypatch.setattr(app, "send_task", broker)
    rasterised: list[str] = []
    real_rasterize = extractor.pipeline.rasterize_document

    def counting_rasterize(source: Any, limits: Any) -> Any:
        rasterised.append(source.name)
        return real_rasterize(source, limits)

    monkeypatch.setattr(extractor.pipeline, "rasterize_document", counting_rasterize)
    document_id = _create(runtime)

    # eagerly, as a worker would run it: the task's automatic retries run at once, one after the other
    result = app.tasks["bayou.rasterize"].apply(args=[document_id], kwargs={"gpu_queue": "gpu.800m"})

    assert (result.state, result.result) == ("SUCCESS", "rasterized")
    document = _status(runtime, document_id)
    assert (document.status, document.error_code, document.pages) == ("processing", None, 1)
    assert document.attempts == 3  # the first delivery and two retries
    assert broker.sent == [(EXTRACT_BATCH_TASK, [document_id])]
    # the retries found the pages stored: rasterised once, one page row, and the extraction sent
    assert (len(rasterised), _page_rows(runtime, document_id)) == (1, 1)


def test_a_broker_unavailable_past_the_retries_leaves_the_document_for_the_sweep(
    worker_runtime: Runtime,
) -> None:
    from workers.dispatch import BrokerUnavailable

    runtime = worker_runtime
    document_id = _create(runtime)
    with runtime.sessions() as session:
        set_status(session, document_id, S.PROCESSING)

    rasterize = get_app().tasks["bayou.rasterize"]
    rasterize.on_failure(BrokerUnavailable("restarting"), "t1", [document_id], {}, None)

    assert _status(runtime, document_id).status == "processing"


class RetrySends:
    """FAKE `Celery.send_task` for a task's retry: the first `failures` sends fail as a publish during a
    broker restart does (issue #4); the options of every send are kept."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.options: list[dict[str, Any]] = []
        self.sent: list[str] = []

    def __call__(self, name: str, args: Any = None, kwargs: Any = None, **options: Any) -> None:
        self.options.append(options)
        if self.failures:
            self.failures -= 1
            _publish_on_a_closed_channel()
        self.sent.append(name)


@pytest.mark.parametrize(
    ("task_name", "kwargs"),
    [
        ("bayou.rasterize", {"gpu_queue": "gpu.800m"}),
        ("bayou.extract", {}),
        ("bayou.ingest_batch", {}),
        ("bayou.send_callback", {}),
    ],
)
def test_a_retry_the_broker_cannot_take_gives_the_message_back(
    task_name: str, kwargs: dict[str, str], worker_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from celery.exceptions import Reject, Retry
    from kombu.exceptions import OperationalError as BrokerDown

    from workers.dispatch import FOLLOW_UP_RETRY_POLICY

    app = get_app()
    task = app.tasks[task_name]
    sends = RetrySends(failures=1)
    monkeypatch.setattr(app, "send_task", sends)
    # as a worker runs it: a delivered message (not called directly), first try
    task.push_request(
        id="t1", args=["doc_1"], kwargs=kwargs, retries=0, called_directly=False, delivery_info={}
    )
    try:
        # Celery's own retry would reject it without requeue: with acks_late, the message would be gone
        with pytest.raises(Reject) as rejected:
            task.retry(exc=BrokerDown("restarting"), countdown=1)
        assert rejected.value.requeue is True
        # the broker back, the retry is sent and the run ends as Celery ends a retried one
        with pytest.raises(Retry):
            task.retry(exc=BrokerDown("restarting"), countdown=1)
    finally:
        task.pop_request()
    assert sends.sent == [task_name]
    # the retry waits out a restarting broker as a document's next step does
    assert [options["retry_policy"] for options in sends.options] == [FOLLOW_UP_RETRY_POLICY] * 2


def test_a_message_given_back_once_is_not_given_back_again(
    worker_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from celery.exceptions import Reject
    from kombu.exceptions import OperationalError as BrokerDown

    app = get_app()
    task = app.tasks["bayou.extract"]
    monkeypatch.setattr(app, "send_task", RetrySends(failures=1))
    # Redis marks a message it put back; a broker that takes requeues but not publishes would otherwise
    # keep it going round at once
    task.push_request(
        id="t1",
        args=["doc_1"],
        kwargs={},
        retries=0,
        called_directly=False,
        delivery_info={"redelivered": True},
    )
    try:
        with pytest.raises(Reject) as rejected:
            task.retry(exc=BrokerDown("restarting"), countdown=1)
    finally:
        task.pop_request()
    assert rejected.value.requeue is False  # dropped as Celery drops it: the sweeps take it from there


def test_a_retry_that_fails_for_its_own_sake_is_dropped_as_celery_does(
    worker_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from celery.exceptions import Reject

    app = get_app()
    task = app.tasks["bayou.rasterize"]
    monkeypatch.setattr(app, "send_task", _our_own_bug)
    task.push_request(
        id="t1",
        args=["doc_1"],
        kwargs={"gpu_queue": "gpu.800m"},
        retries=0,
        called_directly=False,
        delivery_info={},
    )
    try:
        with pytest.raises(Reject) as rejected:
            task.retry(exc=RuntimeError("ours"), countdown=1)
    finally:
        task.pop_request()
    # given back, it would fail the same way at once, again and again
    assert rejected.value.requeue is False


def test_a_bug_in_our_code_while_sending_still_fails_the_document(
    worker_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = worker_runtime
    app = get_app()
    monkeypatch.setattr(app, "send_task", _our_own_bug)
    document_id = _create(runtime)

    app.tasks["bayou.rasterize"].apply(args=[document_id], kwargs={"gpu_queue": "gpu.800m"})

    document = _status(runtime, document_id)
    assert (document.status, document.error_code, document.attempts) == ("failed", "internal_error", 1)
    assert (document.error_message or "").startswith("AttributeError")


# --- the micro-batcher's flush timer across a broker reconnect ---


def test_a_reconnect_gives_the_batcher_its_flush_timer_back(
    worker_env: Callable[..., dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from kombu.asynchronous.timer import Timer

    from workers.reconnect import RearmBatchFlushTimers

    worker_env()
    app = get_app()
    assert RearmBatchFlushTimers in app.steps["consumer"]
    batcher = app.tasks["bayou.extract_batch"]
    flushes: list[int] = []
    monkeypatch.setattr(batcher, "_do_flush", lambda: flushes.append(1))
    timer = Timer()
    # armed as celery-batches arms it at the first request, then cleared as asynloop clears it on a
    # connection error; celery-batches, seeing _tref set, would never arm it again
    lost = timer.call_repeatedly(batcher.flush_interval, batcher._do_flush)
    monkeypatch.setattr(batcher, "_tref", lost)
    timer.clear()

    RearmBatchFlushTimers(parent=None).start(SimpleNamespace(app=app, timer=timer))

    ((_, _, entry),) = timer.queue
    assert lost.canceled and batcher._tref is entry and not entry.canceled
    entry()
    assert flushes == [1]


def test_a_batcher_with_nothing_in_hand_gets_no_timer_at_a_reconnect(
    worker_env: Callable[..., dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from kombu.asynchronous.timer import Timer

    from workers.reconnect import RearmBatchFlushTimers

    worker_env()
    app = get_app()
    monkeypatch.setattr(app.tasks["bayou.extract_batch"], "_tref", None)
    timer = Timer()

    RearmBatchFlushTimers(parent=None).start(SimpleNamespace(app=app, timer=timer))

    assert len(timer) == 0


# --- stopping the embedded worker ---


@pytest.mark.parametrize("broker", ["embedded", "redis"])
def test_the_embedded_worker_stops_in_its_own_thread_without_errors(
    broker: str, worker_env: Callable[..., dict[str, str]], request: pytest.FixtureRequest, caplog
) -> None:
    import logging
    import time

    from celery.worker import state as worker_state

    from workers.embedded import start_worker_thread

    worker_env(broker_url=request.getfixturevalue("redis_broker_url") if broker == "redis" else "")
    check_schema(get_runtime().settings)
    for _ in range(3):  # the race it avoids (a connection closed under the reading thread) was intermittent
        worker = start_worker_thread(sweep_every_s=3600)
        time.sleep(1.0)  # consuming: waiting on the broker
        with caplog.at_level(logging.WARNING):
            worker.stop(timeout=20)
        assert not worker.thread.is_alive()
        assert worker_state.should_stop is None  # the next worker of this process must not stop at once
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or "did not stop" in r.getMessage()]
    assert errors == []


# --- a document that keeps killing its worker ---


@pytest.mark.parametrize("stage", ["rasterize", "extract"])
def test_a_document_past_its_attempts_fails_instead_of_going_round_again(
    stage: str, worker_runtime: Runtime
) -> None:
    from workers.extracting import extract_stored
    from workers.outcomes import MAX_ATTEMPTS
    from workers.rasterizing import rasterize_stored

    runtime = worker_runtime
    document_id = _create(runtime)
    if stage == "extract":
        assert rasterize_stored(runtime, document_id).value == "rasterized"
    with runtime.sessions() as session:
        # every earlier delivery died with its worker (SIGKILL, OOM killer): nothing but the count is left
        session.execute(update(Document).where(Document.id == document_id).values(attempts=MAX_ATTEMPTS))
        session.commit()

    if stage == "rasterize":
        outcome = rasterize_stored(runtime, document_id)
    else:
        outcome = extract_stored(runtime, document_id, idempotency_key="last-straw")

    assert outcome.value == "skipped"
    document = _status(runtime, document_id)
    assert (document.status, document.error_code) == ("failed", "too_many_attempts")
