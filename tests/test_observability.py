"""Observability: JSON logs that carry ids (and never field values), and the Prometheus series of /metrics
(backlog read at scrape time, worker-side stage latency, tokens, outcomes, GPU memory)."""

from __future__ import annotations

import io
import json
import logging
import re
import socket
import sys
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bayou.logs import (
    ContextFilter,
    JsonFormatter,
    bind_document_id,
    clear_context,
    configure_logging,
    current_context,
    make_handler,
    scoped_context,
)

# --- helpers ---


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Exposition text to {(sample name, sorted labels): value}."""
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def _value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def _default_value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """Everything logged at INFO and above during the test, through bayou's JSON handler."""
    stream = io.StringIO()
    handler = make_handler("json", stream)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)
    clear_context()


def _parsed(stream: io.StringIO, logger: str | None = None) -> list[dict[str, Any]]:
    entries = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    return [entry for entry in entries if logger is None or entry["logger"] == logger]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- log format ---


def test_a_json_line_has_time_level_logger_message_and_the_bound_ids() -> None:
    record = logging.LogRecord(
        "bayou.test", logging.WARNING, __file__, 1, "document %s is %s", ("d1", "x"), None
    )
    with scoped_context(document_id="doc_abc", task_id="task-1"):
        ContextFilter().filter(record)
    line = JsonFormatter().format(record)

    assert "\n" not in line
    entry = json.loads(line)
    assert entry["time"].endswith("+00:00")  # ISO 8601 in UTC
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "bayou.test"
    assert entry["message"] == "document d1 is x"
    assert entry["document_id"] == "doc_abc"
    assert entry["task_id"] == "task-1"
    assert "request_id" not in entry  # unknown ids are left out, not null


def test_a_json_line_carries_the_exception_and_survives_odd_arguments(json_lines: io.StringIO) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("bayou.test").exception("failed with %s", object())

    (entry,) = _parsed(json_lines, "bayou.test")
    assert entry["level"] == "ERROR"
    assert "ValueError: boom" in entry["exception"]
    assert "Traceback" in entry["exception"]


def test_scoped_context_restores_what_was_bound_before_and_after() -> None:
    bind_document_id("outer")
    with scoped_context(request_id="r1"):
        assert current_context() == {"request_id": "r1"}
        bind_document_id("inner")  # e.g. a route binding its document
        assert current_context() == {"request_id": "r1", "document_id": "inner"}
    assert current_context() == {"document_id": "outer"}
    clear_context()
    assert current_context() == {}


def test_the_text_format_appends_the_known_ids() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("bayou.test.text")
    logger.addHandler(make_handler("text", stream))
    logger.propagate = False
    try:
        with scoped_context(document_id="doc_t"):
            logger.warning("hello")
        logger.warning("no ids")
    finally:
        logger.handlers.clear()
        logger.propagate = True
    first, second = stream.getvalue().splitlines()
    assert first.endswith("WARNING bayou.test.text: hello [document_id=doc_t]")
    assert second.endswith("no ids")


def test_configure_logging_replaces_console_handlers_and_keeps_others() -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    console = logging.StreamHandler(io.StringIO())  # what basicConfig installs
    kept = logging.NullHandler()
    root.addHandler(console)
    root.addHandler(kept)
    try:
        first = configure_logging("text", "WARNING")
        second = configure_logging("json", "DEBUG")
        assert console not in root.handlers and first not in root.handlers
        assert second in root.handlers and kept in root.handlers
        assert isinstance(second.formatter, JsonFormatter)
        assert root.level == logging.DEBUG
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def test_log_settings_are_checked() -> None:
    from pydantic import ValidationError

    from bayou.settings import Settings

    assert Settings(_env_file=None, log_level="debug").log_level == "DEBUG"
    with pytest.raises(ValidationError):
        Settings(_env_file=None, log_level="chatty")
    with pytest.raises(ValidationError):
        Settings(_env_file=None, log_format="xml")


# --- Celery signals: ids on a task's lines, the rasterize stage, Celery's logging set-up ---


class FakeTask:
    """What the task signals pass as `task` (hashable, as Celery's signal cache needs)."""

    def __init__(self, name: str) -> None:
        self.name = name


def test_a_document_task_logs_under_its_task_and_document_id(json_lines: io.StringIO) -> None:
    from celery.signals import task_postrun, task_prerun

    import workers.app  # noqa: F401  (connects the receivers)
    from workers.names import EXTRACT_BATCH_TASK, RASTERIZE_TASK

    task = FakeTask(RASTERIZE_TASK)
    before = _default_value("bayou_stage_seconds_count", stage="rasterize")
    task_prerun.send(sender=task, task_id="t-1", task=task, args=["doc_sig"], kwargs={})
    logging.getLogger("workers.test").info("working")
    task_postrun.send(sender=task, task_id="t-1", task=task, args=["doc_sig"], kwargs={}, retval="rasterized")
    logging.getLogger("workers.test").info("after")

    batch = FakeTask(EXTRACT_BATCH_TASK)
    stage_counts = _stage_counts()
    task_prerun.send(sender=batch, task_id="t-2", task=batch, args=[[SimpleNamespace(args=["d"])]], kwargs={})
    logging.getLogger("workers.test").info("batch")
    task_postrun.send(sender=batch, task_id="t-2", task=batch, args=[], kwargs={}, retval=[])

    working, after, in_batch = _parsed(json_lines, "workers.test")
    assert (working["document_id"], working["task_id"]) == ("doc_sig", "t-1")
    assert "document_id" not in after and "task_id" not in after
    # a batch's documents are bound one by one where they are stored, not by the task
    assert in_batch["task_id"] == "t-2" and "document_id" not in in_batch
    assert _default_value("bayou_stage_seconds_count", stage="rasterize") == before + 1
    # the batch task's own duration is no stage (its documents' stages come from their results)
    assert _stage_counts() == stage_counts


def _stage_counts() -> dict[str, float]:
    from prometheus_client import REGISTRY

    return {
        sample.labels["stage"]: sample.value
        for metric in REGISTRY.collect()
        if metric.name == "bayou_stage_seconds"
        for sample in metric.samples
        if sample.name == "bayou_stage_seconds_count"
    }


def test_celery_logging_set_up_is_bayous(monkeypatch: pytest.MonkeyPatch) -> None:
    from celery.signals import setup_logging

    import workers.app  # noqa: F401
    from bayou.settings import get_settings

    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    monkeypatch.setenv("BAYOU_LOG_FORMAT", "json")
    get_settings.cache_clear()
    try:
        # Celery configures logging itself only when no receiver answers this signal
        assert setup_logging.send(
            sender=None, loglevel=logging.WARNING, logfile=None, format="", colorize=False
        )
        ours = [handler for handler in root.handlers if getattr(handler, "_bayou", False)]
        assert len(ours) == 1 and isinstance(ours[0].formatter, JsonFormatter)
        assert root.level == logging.WARNING
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        monkeypatch.undo()
        get_settings.cache_clear()


# --- API: request ids, document ids ---


def test_a_request_gets_an_id_and_an_upload_logs_under_its_document(
    api_client, make_png, json_lines: io.StringIO
) -> None:
    response = api_client.post(
        "/v1/documents",
        files={"file": ("scan.png", make_png(7), "image/png")},
        data={"doc_type": "receipt"},
        headers={"X-Request-ID": "req-42"},
    )
    assert response.status_code == 202
    assert response.headers["X-Request-ID"] == "req-42"
    stored = [entry for entry in _parsed(json_lines) if "stored" in entry["message"]]
    assert stored and stored[0]["document_id"] == response.json()["id"]
    assert stored[0]["request_id"] == "req-42"


def test_an_unacceptable_request_id_is_replaced(api_client) -> None:
    response = api_client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert response.headers["X-Request-ID"] != "bad id\twith spaces"
    assert len(response.headers["X-Request-ID"]) == 32
    assert api_client.get("/healthz").headers["X-Request-ID"] != response.headers["X-Request-ID"]


def test_a_document_route_logs_under_the_document_id(api_client, json_lines: io.StringIO) -> None:
    from fastapi import APIRouter

    router = APIRouter()

    @router.get("/probe/{document_id}")
    def probe(document_id: str) -> dict:
        logging.getLogger("api.test").info("probing")
        return {}

    api_client.app.include_router(router, dependencies=api_client.app.router.dependencies)
    assert api_client.get("/probe/doc_route").status_code == 200
    (entry,) = [entry for entry in _parsed(json_lines) if entry["message"] == "probing"]
    assert entry["document_id"] == "doc_route" and "request_id" in entry


# --- /metrics: backlog at scrape time ---


def test_documents_by_status_are_counted_at_scrape_time(make_api_client, any_db_url: str, make_png) -> None:
    api_client = make_api_client(database_url=any_db_url)
    for seed in (1, 2):
        files = {"file": ("scan.png", make_png(seed), "image/png")}
        assert api_client.post("/v1/documents", files=files, data={"doc_type": "receipt"}).status_code == 202
    samples = _samples(api_client.get("/metrics").text)
    assert _value(samples, "bayou_documents", status="queued") == 2
    assert _value(samples, "bayou_documents", status="done") == 0  # every status, zero included
    assert _value(samples, "bayou_metrics_source_up", source="database") == 1


def _send_rasterize(settings, document_ids: list[str]) -> None:
    from workers.app import make_app
    from workers.dispatch import enqueue

    app = make_app(settings)
    try:
        for document_id in document_ids:
            enqueue(document_id, model=None, doc_type="receipt", app=app)
    finally:
        app.close()


def test_queue_depth_counts_messages_no_worker_took_on_the_embedded_broker(api_client) -> None:
    settings = api_client.app.state.bayou.settings
    before = _samples(api_client.get("/metrics").text)
    assert _value(before, "bayou_queue_depth", queue="cpu") == 0

    _send_rasterize(settings, ["doc_a", "doc_b", "doc_c"])
    after = _samples(api_client.get("/metrics").text)
    assert _value(after, "bayou_queue_depth", queue="cpu") == 3
    assert _value(after, "bayou_queue_depth", queue="gpu.800m") == 0
    assert _value(after, "bayou_metrics_source_up", source="broker") == 1


def test_queue_depth_counts_messages_on_redis(make_api_client, redis_broker_url: str) -> None:
    client = make_api_client(broker_url=redis_broker_url)
    _send_rasterize(client.app.state.bayou.settings, ["doc_r1", "doc_r2"])
    samples = _samples(client.get("/metrics").text)
    assert _value(samples, "bayou_queue_depth", queue="cpu") == 2
    assert _value(samples, "bayou_queue_depth", queue="gpu.2b") == 0


def test_a_scrape_survives_a_database_error(api_client, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy.exc import OperationalError

    def unreachable(*_: Any, **__: Any) -> None:
        raise OperationalError("SELECT", {}, Exception("database is down (test)"))

    api_client.get("/healthz")
    monkeypatch.setattr(api_client.app.state.bayou.engine, "connect", unreachable)
    response = api_client.get("/metrics")

    assert response.status_code == 200
    samples = _samples(response.text)
    assert _value(samples, "bayou_metrics_source_up", source="database") == 0
    assert not any(name == "bayou_documents" for name, _ in samples)
    # what could be read still is
    assert _value(samples, "bayou_queue_depth", queue="cpu") == 0
    assert _value(samples, "bayou_http_requests_total", route="/healthz", method="GET", status="200") == 1


def test_a_scrape_survives_a_broker_that_does_not_answer(make_api_client) -> None:
    client = make_api_client(broker_url=f"redis://127.0.0.1:{_closed_port()}/0")
    response = client.get("/metrics")
    assert response.status_code == 200
    samples = _samples(response.text)
    assert _value(samples, "bayou_metrics_source_up", source="broker") == 0
    assert not any(name == "bayou_queue_depth" for name, _ in samples)
    assert _value(samples, "bayou_documents", status="queued") == 0


# --- worker-side series: recording, GPU memory, the separate worker's exporter ---


def _result(**overrides: Any):
    from extractor.result import Result

    values: dict[str, Any] = {
        "doc_type": "receipt",
        "model": "fake-model",
        "data": {"merchant_name": "x"},
        "valid": True,
        "confidence": {"/merchant_name": 0.99},
        "tokens": {"prompt": 10, "generated": 25},
        "timings_ms": {"rasterize": 0.0, "preprocess": 20.0, "generate": 1500.0, "total": 1520.0},
    }
    values.update(overrides)
    return Result(**values)


def test_a_result_counts_its_tokens_and_stages_and_a_stored_outcome_its_status() -> None:
    from workers.telemetry import record_generation, record_outcome

    tokens = _default_value("bayou_generated_tokens_total", model="fake-model")
    done = _default_value("bayou_documents_processed_total", model="fake-model", outcome="done")
    generate = _default_value("bayou_stage_seconds_sum", stage="generate")
    extract_sum = _default_value("bayou_stage_seconds_sum", stage="extract")
    extract = _default_value("bayou_stage_seconds_count", stage="extract")

    timings = {"rasterize": 30.0, "preprocess": 20.0, "generate": 1500.0, "total": 1550.0}
    record_generation(_result(timings_ms=timings))
    record_generation(_result(error={"code": "corrupt_file", "message": "..."}, tokens={}, timings_ms={}))
    record_outcome("fake-model", "done")

    assert _default_value("bayou_generated_tokens_total", model="fake-model") == tokens + 25
    assert _default_value("bayou_documents_processed_total", model="fake-model", outcome="done") == done + 1
    assert _default_value("bayou_stage_seconds_sum", stage="generate") == pytest.approx(generate + 1.5)
    # extract is the run less its rasterising, which is a stage of its own
    assert _default_value("bayou_stage_seconds_count", stage="extract") == extract + 1
    assert _default_value("bayou_stage_seconds_sum", stage="extract") == pytest.approx(extract_sum + 1.52)


class FakeTorchCuda:
    """Stands in for torch.cuda on a machine with two GPUs."""

    @staticmethod
    def is_available() -> bool:
        return True

    @staticmethod
    def device_count() -> int:
        return 2

    @staticmethod
    def memory_allocated(index: int) -> int:
        return 1000 * (index + 1)

    @staticmethod
    def memory_reserved(index: int) -> int:
        return 4000 * (index + 1)


def _gpu_samples() -> dict:
    from workers.telemetry import GpuMemoryCollector

    registry = CollectorRegistry()
    registry.register(GpuMemoryCollector())
    return _samples(generate_latest(registry).decode())


def test_gpu_memory_is_absent_without_torch_or_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert _gpu_samples() == {}
    monkeypatch.setitem(
        sys.modules, "torch", SimpleNamespace(cuda=SimpleNamespace(is_available=lambda: False))
    )
    assert _gpu_samples() == {}


def test_gpu_memory_per_device_from_torch_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=FakeTorchCuda))
    samples = _gpu_samples()
    assert _value(samples, "bayou_gpu_memory_bytes", device="cuda:0", kind="allocated") == 1000
    assert _value(samples, "bayou_gpu_memory_bytes", device="cuda:1", kind="reserved") == 8000
    assert len(samples) == 4
    # and it is on the default registry, which a worker's exporter and the API's /metrics serve
    assert (
        REGISTRY.get_sample_value("bayou_gpu_memory_bytes", {"device": "cuda:1", "kind": "allocated"}) == 2000
    )


def test_the_worker_exporter_listens_on_the_port_plus_the_pool_index(monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.request

    from workers import telemetry

    servers = []
    real_start = telemetry.start_http_server
    monkeypatch.setattr(telemetry, "start_http_server", lambda port: servers.append(real_start(port)))

    assert telemetry.start_exporter() is None  # no --metrics-port: no exporter
    port = _closed_port()
    monkeypatch.setattr(telemetry, "_pool_index", lambda: 1)
    monkeypatch.setattr(telemetry, "_exporter_port", port - 1)
    try:
        assert telemetry.start_exporter() == port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert b"bayou_stage_seconds" in response.read()
    finally:
        for server, _thread in servers:
            server.shutdown()


def test_bayou_worker_takes_a_metrics_port() -> None:
    from typer.testing import CliRunner

    from bayou.cli import _assemble
    from bayou.cli import app as cli

    _assemble()
    result = CliRunner().invoke(cli, ["worker", "--help"])
    assert result.exit_code == 0 and "--metrics-port" in result.output


# --- end to end: the embedded worker and the tiny checkpoint ---


def _leaves(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    elif value is not None and not isinstance(value, bool):
        yield str(value)


def test_a_processed_document_shows_in_metrics_and_its_logs_name_it_without_its_values(
    embedded_worker, worker_documents, json_lines: io.StringIO
) -> None:
    from fastapi.testclient import TestClient
    from sqlalchemy import select

    from api.app import create_app
    from storage.models import ExtractionRun

    rasterize = _default_value("bayou_stage_seconds_count", stage="rasterize")
    generate = _default_value("bayou_stage_seconds_count", stage="generate")

    document_id = worker_documents.submit(embedded_worker, worker_documents.png(448, 448))
    statuses = worker_documents.wait_finished(embedded_worker, [document_id])

    with TestClient(create_app(embedded_worker.settings)) as client:
        samples = _samples(client.get("/metrics").text)
    status = statuses[document_id]
    assert _value(samples, "bayou_documents", status=status) == 1
    assert _value(samples, "bayou_queue_depth", queue="cpu") == 0
    assert _value(samples, "bayou_stage_seconds_count", stage="rasterize") == rasterize + 1
    assert _value(samples, "bayou_stage_seconds_count", stage="generate") == generate + 1
    assert (_value(samples, "bayou_generated_tokens_total", model="h2ovl-800m") or 0) > 0
    assert (_value(samples, "bayou_documents_processed_total", model="h2ovl-800m", outcome=status) or 0) >= 1

    entries = _parsed(json_lines)
    about = [entry for entry in entries if entry.get("document_id") == document_id]
    assert any(entry["logger"] == "workers.extracting" for entry in about), entries
    assert all("task_id" in entry for entry in about if entry["logger"].startswith("workers."))

    with embedded_worker.sessions() as session:
        run = session.scalars(select(ExtractionRun).where(ExtractionRun.document_id == document_id)).one()
        data, raw_output = run.data, run.raw_output
    assert raw_output
    logged = "\n".join(f"{entry['message']}\n{entry.get('exception', '')}" for entry in entries)
    leaked = [value for value in _traces_of(data, raw_output) if value in logged]
    assert not leaked, leaked


def _traces_of(data: Any, raw_output: str) -> set[str]:
    """What a log line holding an extracted value would contain, however it was formatted: the value,
    its repr's inside, and its runs of 6+ letters (the tiny model's noise is the same on each run; short or
    letterless values could turn up by chance in a timestamp, a path or a task id)."""
    traces = {raw_output, json.dumps(data), str(data)}
    for value in _leaves(data):
        if len(value) >= 5 and any(c.isalpha() for c in value):
            traces |= {value, repr(value)[1:-1]}
        traces |= set(re.findall(r"[A-Za-z]{6,}", value))
    return traces
