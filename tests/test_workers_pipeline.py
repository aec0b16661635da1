"""The queue end to end with real Celery workers and the tiny checkpoint (random weights, so a document
ends done or needs_review): the embedded broker with SQLite in a thread (what `bayou serve` runs), and
Redis with PostgreSQL in a worker process."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from celery.signals import task_postrun
from PIL import Image
from sqlalchemy import select

from storage.documents import get_document_fresh
from storage.models import Document, DocumentStatus, ExtractionRun
from tests.conftest import WorkerDocuments
from tests.imaging import needs_tesseract
from workers import dispatch
from workers.broker import waiting_messages
from workers.embedded import start_worker_thread
from workers.names import EXTRACT_BATCH_TASK, EXTRACT_TASK
from workers.runtime import Runtime, check_schema, get_runtime

S = DocumentStatus
FINISHED = {S.DONE.value, S.NEEDS_REVIEW.value}
DOCUMENTS = WorkerDocuments()  # the shared helpers behind the `worker_documents` fixture


def _truncated_png() -> bytes:
    """Passes the upload sniff (a PNG signature and header) but is cut off inside."""
    buffer = io.BytesIO()
    Image.effect_noise((300, 300), 50).convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()[:2000]


POISON = _truncated_png()


def _tiff(pages: list[bytes]) -> bytes:
    images = [Image.open(io.BytesIO(page)) for page in pages]
    buffer = io.BytesIO()
    images[0].save(buffer, format="TIFF", save_all=True, append_images=images[1:])
    return buffer.getvalue()


def _document(runtime: Runtime, document_id: str) -> Document:
    with runtime.sessions() as session:
        return get_document_fresh(session, document_id)


def _runs(runtime: Runtime, document_id: str) -> int:
    return DOCUMENTS.runs(runtime, [document_id])[document_id]


def _wait_for(
    runtime: Runtime, document_id: str, done: Callable[[Document], bool], timeout: float = 60
) -> Document:
    deadline = time.monotonic() + timeout
    while True:
        document = _document(runtime, document_id)
        if done(document):
            return document
        if time.monotonic() > deadline:
            raise AssertionError(f"document {document_id} still {document.status} after {timeout} s")
        time.sleep(0.2)


def _finished(document: Document) -> bool:
    return document.status not in (S.QUEUED.value, S.PROCESSING.value)


@contextmanager
def _outcomes() -> Iterator[list[tuple[str, str, Any]]]:
    """(task name, task id, returned outcome) of every task run in this process meanwhile."""
    seen: list[tuple[str, str, Any]] = []

    def record(sender: Any = None, task_id: str = "", retval: Any = None, **_: Any) -> None:
        seen.append((sender.name, task_id, retval))

    task_postrun.connect(record, weak=False)
    try:
        yield seen
    finally:
        task_postrun.disconnect(record)


# --- the embedded worker (SQLite + embedded broker, one thread) ---


def test_embedded_worker_takes_a_document_from_queued_to_finished_with_one_run(
    embedded_worker: Runtime,
) -> None:
    document_id = DOCUMENTS.submit(embedded_worker, DOCUMENTS.png(448, 448))

    document = _wait_for(embedded_worker, document_id, _finished)

    assert document.status in FINISHED
    assert document.pages == 1
    assert document.error_code is None
    assert _runs(embedded_worker, document_id) == 1
    # the run's timings cover the CPU stage too, though it ran in another task
    with embedded_worker.sessions() as session:
        timings = session.scalars(
            select(ExtractionRun.timings_ms).where(ExtractionRun.document_id == document_id)
        ).one()
    assert 0 < timings["rasterize"] == document.rasterize_ms
    assert timings["total"] >= timings["rasterize"] + timings["generate"] - 0.01


def test_a_poison_document_fails_with_its_code_and_is_not_retried(embedded_worker: Runtime) -> None:
    with _outcomes() as seen:
        document_id = DOCUMENTS.submit(embedded_worker, POISON)
        document = _wait_for(embedded_worker, document_id, _finished)

    assert document.status == S.FAILED.value
    assert document.error_code == "corrupt_file"
    assert document.attempts == 1
    assert _runs(embedded_worker, document_id) == 0
    assert [(name, outcome) for name, _, outcome in seen] == [("bayou.rasterize", "failed")]


@pytest.mark.parametrize("task", [EXTRACT_BATCH_TASK, EXTRACT_TASK])
def test_the_same_message_delivered_twice_stores_one_run(embedded_worker: Runtime, task: str) -> None:
    from workers.rasterizing import rasterize_stored

    document_id = DOCUMENTS.create(embedded_worker, DOCUMENTS.png(448, 448))
    assert rasterize_stored(embedded_worker, document_id).value == "rasterized"
    processed_before = _processed()

    with _outcomes() as seen:
        # one message id, sent twice: what a broker's redelivery looks like to the worker
        for _ in range(2):
            dispatch.app_or_default(None).send_task(
                task, args=[document_id], queue="gpu.800m", task_id="twice"
            )
        deadline = time.monotonic() + 60
        while len(_flat(seen)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)

    # batched, both deliveries may share one generate; either way only one stores its run
    assert sorted(_flat(seen)) in (["done", "skipped"], ["needs_review", "skipped"])
    assert _document(embedded_worker, document_id).status in FINISHED
    assert _runs(embedded_worker, document_id) == 1
    assert _processed() == processed_before + 1  # the metric counts stored outcomes, not deliveries


def _processed() -> float:
    from prometheus_client import REGISTRY

    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "bayou_documents_processed"
        for sample in metric.samples
        if sample.name == "bayou_documents_processed_total"
    )


def _flat(seen: list[tuple[str, str, Any]]) -> list[str]:
    """Task outcomes, a batch's list of outcomes spread out."""
    return [item for _, _, outcome in seen for item in (outcome if isinstance(outcome, list) else [outcome])]


def test_a_finished_document_sent_again_changes_nothing(embedded_worker: Runtime) -> None:
    document_id = DOCUMENTS.submit(embedded_worker, DOCUMENTS.png(448, 448))
    before = _wait_for(embedded_worker, document_id, _finished)

    with _outcomes() as seen:
        dispatch.enqueue(document_id, model=None, doc_type="receipt")
        dispatch.send_extract(document_id, "gpu.800m")
        deadline = time.monotonic() + 30
        while len(seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)

    after = _document(embedded_worker, document_id)
    assert [(name, outcome) for name, _, outcome in seen] == [
        ("bayou.rasterize", "skipped"),
        ("bayou.extract_batch", ["skipped"]),
    ]
    assert (after.status, after.updated_at, after.attempts) == (
        before.status,
        before.updated_at,
        before.attempts,
    )
    assert _runs(embedded_worker, document_id) == 1


def test_extractions_waiting_together_run_as_one_batch(worker_runtime: Runtime) -> None:
    from workers.rasterizing import rasterize_stored

    runtime = worker_runtime
    documents = [
        DOCUMENTS.create(runtime, DOCUMENTS.png(448, 448, colour)) for colour in ("white", "grey", "black")
    ]
    for document_id in documents:
        assert rasterize_stored(runtime, document_id).value == "rasterized"
        dispatch.send_extract(document_id, "gpu.800m")

    with _outcomes() as seen:
        worker = start_worker_thread(sweep_every_s=3600)
        try:
            finished = [_wait_for(runtime, document_id, _finished) for document_id in documents]
        finally:
            worker.stop()

    batches = [outcome for name, _, outcome in seen if name == "bayou.extract_batch"]
    assert len(batches) == 1 and len(batches[0]) == 3, batches
    assert all(document.status in FINISHED for document in finished)
    assert [_runs(runtime, document_id) for document_id in documents] == [1, 1, 1]


# --- Redis and PostgreSQL ---


@pytest.mark.postgres
@pytest.mark.redis
def test_redis_and_postgresql_take_a_document_to_finished_and_a_poison_one_to_failed(
    worker_env: Callable[..., dict[str, str]],
    postgres_database_factory: Callable[[], str],
    redis_broker_url: str,
) -> None:
    from storage.migrate import upgrade

    database_url = postgres_database_factory()
    upgrade(database_url)
    worker_env(database_url=database_url, broker_url=redis_broker_url)
    runtime = get_runtime()
    good = DOCUMENTS.submit(runtime, DOCUMENTS.png(448, 448))
    poison = DOCUMENTS.submit(runtime, POISON)
    assert waiting_messages(dispatch.app_or_default(None), runtime.settings, "cpu") == 2

    worker = start_worker_thread(sweep_every_s=3600)
    try:
        good_document = _wait_for(runtime, good, _finished)
        poison_document = _wait_for(runtime, poison, _finished)
    finally:
        worker.stop()

    assert good_document.status in FINISHED
    assert _runs(runtime, good) == 1
    assert (poison_document.status, poison_document.error_code) == (S.FAILED.value, "corrupt_file")
    assert _runs(runtime, poison) == 0
    assert waiting_messages(dispatch.app_or_default(None), runtime.settings, "cpu") == 0


# --- a worker process, started as `bayou worker` starts it, killed with SIGKILL ---

# `bayou worker` itself once bayou.cli lists the module; this builds the same command from it alone
_BAYOU_WORKER = (
    "import typer; from bayou.cli.worker import register; app = typer.Typer(); "
    "app.callback()(lambda: None); register(app); app()"
)


def _start_worker_process(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-c",
        _BAYOU_WORKER,
        "worker",
        "--queues",
        "cpu,gpu.800m",
        "--concurrency",
        "1",
    ]
    # a session of its own, so the test can kill the worker and its pool child together
    return subprocess.Popen(
        command,
        env={**os.environ, **env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_for_line(log: Path, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {text!r} in the worker's log:\n{log.read_text(errors='replace')}")
        time.sleep(0.1)


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


@pytest.mark.slow
def test_a_worker_killed_mid_extract_still_finishes_the_document_with_one_run(
    worker_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    env = worker_env()
    runtime = get_runtime()
    check_schema(runtime.settings)
    # three large pages (many tiles) and one CPU thread: an extraction that lasts seconds
    document_id = DOCUMENTS.submit(
        runtime, _tiff([DOCUMENTS.png(1200, 900, colour) for colour in ("white", "grey", "black")])
    )

    log = tmp_path / "worker.log"
    worker = _start_worker_process({**env, "OMP_NUM_THREADS": "1"}, log)
    try:
        # the model is loaded on first use, inside the extraction: from then on it is generating
        _wait_for_line(log, "loaded ", timeout=60)
        killed_while = _document(runtime, document_id)
    finally:
        _kill(worker)
    assert killed_while.status == S.PROCESSING.value, log.read_text()
    assert _runs(runtime, document_id) == 0

    # the embedded broker never redelivers a message its dead worker held: the sweep sends it again
    restarted = start_worker_thread(sweep_every_s=3600, stuck_after_s=0)
    try:
        document = _wait_for(runtime, document_id, _finished)
    finally:
        restarted.stop()

    assert document.status in FINISHED
    assert _runs(runtime, document_id) == 1


def _total_page_png() -> bytes:
    """One white page reading "TOTAL 26.26" in a monospace font, for the OCR stage to find."""
    from PIL import ImageDraw

    from bayou.synthetic.common import font

    page = Image.new("RGB", (480, 160), "white")
    ImageDraw.Draw(page).text((30, 50), "TOTAL 26.26", font=font("mono", 30), fill="black")
    buffer = io.BytesIO()
    page.save(buffer, format="PNG")
    return buffer.getvalue()


@needs_tesseract
def test_the_cpu_stage_stores_each_pages_ocr_words_with_the_page(embedded_worker: Runtime) -> None:
    from storage.models import Page
    from workers.rasterizing import rasterize_stored

    document_id = DOCUMENTS.create(embedded_worker, _total_page_png())

    assert rasterize_stored(embedded_worker, document_id).value == "rasterized"

    with embedded_worker.sessions() as session:
        words = session.scalars(select(Page.words).where(Page.document_id == document_id)).one()
    assert words["status"] == "ok"
    assert [w[0] for w in words["words"]] == ["TOTAL", "26.26"]


@needs_tesseract
def test_the_gpu_stage_grounds_its_run_in_the_stored_words(embedded_worker: Runtime) -> None:
    document_id = DOCUMENTS.submit(embedded_worker, _total_page_png())

    document = _wait_for(embedded_worker, document_id, _finished)

    assert document.status in FINISHED
    with embedded_worker.sessions() as session:
        run = session.scalars(select(ExtractionRun).where(ExtractionRun.document_id == document_id)).one()
        checks, timings = run.checks, run.timings_ms
    # the tiny random model's values: whatever they are, they were looked for among the page's words
    grounding = [c for c in checks if c["name"] == "value_on_page"]
    assert len(grounding) == 1 and "not applicable" not in grounding[0]["message"]
    assert timings["ocr"] > 0


def test_the_cpu_stage_decodes_a_licences_barcode_and_the_gpu_stage_only_reads_it(
    worker_env: Callable[..., dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import random

    import zxingcpp

    import bayou.engines
    from bayou.synthetic.drivers_license import generate_licence
    from storage.models import Page
    from tests.engines import FakeScriptedEngine
    from workers.extracting import extract_stored
    from workers.rasterizing import rasterize_stored

    monkeypatch.setenv("BAYOU_OCR", "false")  # the barcode is read whether OCR runs or not
    worker_env()
    runtime = get_runtime()
    check_schema(runtime.settings)
    licence = generate_licence(random.Random(3), capture="photo")
    pages = []
    for page in licence.pages:
        buffer = io.BytesIO()
        page.save(buffer, format="PNG")
        pages.append(buffer.getvalue())
    document_id = DOCUMENTS.create(runtime, _tiff(pages), "drivers_license")

    assert rasterize_stored(runtime, document_id).value == "rasterized"
    with runtime.sessions() as session:
        query = select(Page.barcode).where(Page.document_id == document_id).order_by(Page.number)
        front, back = session.scalars(query).all()
    assert front is None and back["fields"] == licence.ground_truth  # the back read, the front not needed

    def decoding(*_: Any, **__: Any) -> Any:
        raise AssertionError("the GPU stage decoded a barcode")

    monkeypatch.setattr(zxingcpp, "read_barcodes", decoding)
    monkeypatch.setattr(
        bayou.engines, "get_engine", lambda *_, **__: FakeScriptedEngine(licence.ground_truth)
    )
    assert extract_stored(runtime, document_id, idempotency_key="licence").value == "done"
    with runtime.sessions() as session:
        run = session.scalars(select(ExtractionRun).where(ExtractionRun.document_id == document_id)).one()
    agrees = {"name": "license_barcode_agrees", "ok": True, "message": "every field agrees with the barcode"}
    assert agrees in run.checks
