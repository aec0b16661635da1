"""Benchmark: the pipeline's own overhead per document — everything but model compute.

    python bench/pipeline.py [--documents 1000] [--isolated 50] [--clients 4] [--modes embedded,redis]
                             [--redis-url URL] [--postgres "host=127.0.0.1 port=5432 user=postgres dbname=postgres"]
                             [--worker-process] [--ocr off,on] [--page FILE]

The model is replaced by `FixedAnswerEngine`: it answers every request at once with the same receipt
(the receipt schema's first example) and records how many documents each generate call was given. It is
put where the workers look an engine up (`bayou.engines.get_engine`, patched in this process), and the
worker runs in this process too: `workers.embedded.start_worker_thread()` (real Celery, solo pool, every
queue, the micro-batcher as configured). Uploads go through the real FastAPI app (`api.app.create_app`,
its default `workers.enqueue`) with Starlette's TestClient, from `--clients` threads; the rate limit is
lifted so it is not what is measured.

A document's latency is from just before its upload to the commit of its stored run (the run's
`created_at`, taken from the same clock). Two regimes, per mode:

* burst: `--documents` distinct PNGs uploaded back to back; throughput = documents / (last stored run -
  first upload); latency here includes waiting behind the rest of the burst; the batch sizes the
  micro-batcher formed are from this phase.
* isolated: `--isolated` documents one at a time (the next uploaded once the last is stored): the
  per-document overhead with nothing queued ahead — the figure the median target is about.

Per stage (from Celery's task_prerun/postrun in this process): upload request, wait until rasterise
starts (broker hop), rasterise task, wait until the extraction batch starts (broker hop + batch wait),
extraction task (fixed answer, parse, validate, store).

Modes: (a) `embedded`: SQLite + the embedded broker (kombu's SQLAlchemy transport on SQLite, through
`workers.sqlite_broker`) in a fresh data dir; (b) `redis`: Redis (a redis-server of its own on a free port when the binary is there, else
`--redis-url`) + a throwaway PostgreSQL database, dropped at the end.

`--ocr off,on` runs each mode once per value of `BAYOU_OCR` (the CPU stage's Tesseract pass), back to back,
and reports the runs' median `ocr` and `locate` milliseconds; `--page FILE` uploads that image (one pixel
changed per document, so none is a duplicate) instead of the small single-colour PNG, on which OCR finds
no words and costs only Tesseract's start.

Prints the figures and a markdown block for docs/benchmarks.md. Client, API and worker share this
process (one GIL) and the machine's cores; `--worker-process` runs the worker (same patched engine) in
a child process instead, as `bayou worker` runs beside the API with Redis + PostgreSQL.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_MEDIAN_MS = 50.0  # embedded, isolated
TARGET_RATE = 50.0  # documents/s, Redis + PostgreSQL, burst
DEFAULT_POSTGRES = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


# --- the engine that is not a model -----------------------------------------------------------------


class FixedAnswerEngine:
    """Stands in for the model: every request gets the same valid receipt at once. Records the number of
    documents of each generate call (what the micro-batcher formed)."""

    name = "fixed-answer"
    revision = "bench"

    def __init__(self) -> None:
        from extractor.schemas import load_schema

        self.text = json.dumps(load_schema("receipt")["examples"][0])
        self.calls: list[tuple[float, int]] = []  # (time.time(), documents) per generate call
        self._lock = threading.Lock()

    def fit(self, request: Any) -> Any:
        from extractor.context import TileFit

        return TileFit(max_tiles=1, tiles_per_page=[1] * len(request.images), prompt_tokens=0)

    def run(self, requests: list[Any]) -> list[Any]:
        from extractor.generation import GenerationOutput

        with self._lock:
            self.calls.append((time.time(), len(requests)))
        return [
            GenerationOutput(
                text=self.text,
                token_ids=[],
                token_probs=[],
                forced=[],
                confidence={},
                prompt_tokens=0,
                finish_reason="stop",
                batch_size=len(requests),
            )
            for _ in requests
        ]


# --- payloads -----------------------------------------------------------------------------------------


def page_payload(path: Path) -> Any:
    """seed -> PNG bytes of the page at `path`, its top-left pixel set from the seed (no duplicates)."""
    from PIL import Image

    page = Image.open(path).convert("RGB")

    def payload(seed: int) -> bytes:
        marked = page.copy()
        marked.putpixel((0, 0), (seed % 256, (seed // 256) % 256, (seed // 65536) % 256))
        buffer = io.BytesIO()
        marked.save(buffer, format="PNG", compress_level=1)
        return buffer.getvalue()

    return payload


def png(seed: int, size: tuple[int, int] = (64, 48)) -> bytes:
    """A small PNG whose colour differs for each seed (so no upload is a duplicate)."""
    from PIL import Image

    colour = (seed % 256, (seed // 256) % 256, (seed // 65536 + 97) % 256)
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


# --- services -----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OwnRedis:
    def __init__(self, directory: Path) -> None:
        import redis

        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "no", "--dir", str(directory)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        raise SystemExit("redis-server did not start")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=10)


class ThrowawayPostgres:
    def __init__(self, admin: str) -> None:
        import psycopg
        from psycopg import sql
        from psycopg.conninfo import conninfo_to_dict
        from sqlalchemy import URL

        self.admin = admin
        self.name = f"bayou_bench_{secrets.token_hex(6)}"
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        params = conninfo_to_dict(admin)
        self.url = URL.create(
            "postgresql+psycopg",
            username=params.get("user"),
            password=params.get("password"),
            host=params.get("host"),
            port=int(params["port"]) if params.get("port") else None,
            database=self.name,
        ).render_as_string(hide_password=False)

    def drop(self) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.admin, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name))
            )


# --- stage timings from Celery's signals --------------------------------------------------------------


@dataclass
class Stages:
    """Wall-clock times (time.time()) per document id and stage name."""

    times: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def mark(self, document_id: str, stage: str) -> None:
        with self.lock:
            self.times[document_id].setdefault(stage, time.time())

    def connect(self) -> None:
        from celery.signals import task_postrun, task_prerun

        task_prerun.connect(self._pre, weak=False)
        task_postrun.connect(self._post, weak=False)

    def disconnect(self) -> None:
        from celery.signals import task_postrun, task_prerun

        task_prerun.disconnect(self._pre)
        task_postrun.disconnect(self._post)

    def _ids(self, args: Any) -> list[str]:
        if not args:
            return []
        first = args[0]
        if isinstance(first, str):
            return [first]
        if isinstance(first, list):  # a batch: SimpleRequests
            return [r.args[0] for r in first if getattr(r, "args", None)]
        return []

    def _pre(self, sender: Any = None, args: Any = None, **_: Any) -> None:
        for document_id in self._ids(args):
            self.mark(document_id, f"{_short(sender.name)}_start")

    def _post(self, sender: Any = None, args: Any = None, **_: Any) -> None:
        for document_id in self._ids(args):
            self.mark(document_id, f"{_short(sender.name)}_end")


def _short(task_name: str) -> str:
    return task_name.rsplit(".", 1)[-1]  # bayou.rasterize -> rasterize, bayou.extract_batch -> extract_batch


# --- one mode -----------------------------------------------------------------------------------------


@dataclass
class Uploaded:
    document_id: str
    started: float  # time.time() before the request
    answered: float  # time.time() when the response came


@dataclass
class Phase:
    uploads: list[Uploaded]
    stored: dict[str, float]  # document id -> run created_at (epoch s)
    statuses: dict[str, int]
    runs_per_document: dict[int, int]


def configure(data_dir: Path, database_url: str, broker_url: str) -> None:
    from bayou.settings import get_settings
    from workers.app import get_app
    from workers.runtime import reset_runtime

    os.environ["BAYOU_DATA_DIR"] = str(data_dir)
    os.environ["BAYOU_DATABASE_URL"] = database_url
    os.environ["BAYOU_BROKER_URL"] = broker_url
    get_settings.cache_clear()
    get_app.cache_clear()
    reset_runtime()


@contextmanager
def api_client(key_name: str) -> Iterator[tuple[Any, Any]]:
    """The real app from the current settings, rate limit lifted (it is not what is measured), through
    Starlette's TestClient, authenticated by a new API key: (app, client)."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.keys import create_key
    from api.ratelimit import RateLimit
    from bayou.settings import get_settings

    app = create_app(get_settings(), rate_limit=RateLimit(per_second=1e9, burst=10**9))
    with TestClient(app) as client:
        with app.state.bayou.sessions() as session:
            client.headers["Authorization"] = f"Bearer {create_key(session, key_name)}"
        yield app, client


def run_mode(label: str, args: argparse.Namespace, engine: FixedAnswerEngine) -> dict[str, Any]:

    from storage.migrate import upgrade
    from workers.embedded import start_worker_thread
    from workers.runtime import get_runtime

    temp = Path(tempfile.mkdtemp(prefix=f"bench-pipeline-{label}-"))
    cleanups: list[Any] = [lambda: shutil.rmtree(temp, ignore_errors=True)]
    try:
        if label == "embedded":
            configure(temp / "data", "", "")
            backend = "SQLite + embedded broker (SQLAlchemy transport on SQLite)"
        else:
            if args.redis_url:
                broker = args.redis_url
            elif shutil.which("redis-server"):
                own = OwnRedis(temp)
                cleanups.append(own.stop)
                broker = own.url
            else:
                raise SystemExit("no redis-server binary: pass --redis-url")
            postgres = ThrowawayPostgres(args.postgres)
            cleanups.append(postgres.drop)
            upgrade(postgres.url)
            configure(temp / "data", postgres.url, broker)
            backend = "Redis + PostgreSQL"
        with api_client(f"bench-{label}") as (_app, client):
            runtime = get_runtime()
            stages = Stages()
            if args.worker_process:
                worker: Any = WorkerProcess(temp / "worker.json", temp / "worker.log")
                backend += ", worker in its own process"
            else:
                stages.connect()
                worker = start_worker_thread(sweep_every_s=3600)
            try:
                _warm_up(client, runtime, seed_base=10_000_000)
                burst = _burst(client, runtime, stages, args.documents, args.clients, seed_base=0)
                split = time.time()
                isolated = _isolated(client, runtime, stages, args.isolated, seed_base=5_000_000)
                run_timings = _run_timings(runtime, [u.document_id for u in isolated.uploads])
            finally:
                worker.stop()
                stages.disconnect()
            calls = engine.calls
            if args.worker_process:
                calls = worker.merge_into(stages)
            burst_start = min(u.started for u in burst.uploads)
            burst_batches = [n for t, n in calls if burst_start <= t < split]
            isolated_batches = [n for t, n in calls if t >= split]
        summary = _summarise(label, backend, burst, isolated, burst_batches, isolated_batches, stages)
        return {**summary, "isolated_run_timings": run_timings}
    finally:
        for cleanup in reversed(cleanups):
            try:
                cleanup()
            except Exception as error:  # best effort
                print(f"cleanup failed: {error!r}", file=sys.stderr)


class WorkerProcess:
    """The worker in a child process (`--serve-worker`), as `bayou worker` would run beside the API:
    the same patched engine and stage marks, handed back as JSON when it stops."""

    def __init__(self, result: Path, log: Path) -> None:
        self.result = result
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve-worker", str(result)],
            stdin=subprocess.PIPE,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()  # the child stops when its stdin ends
        self.process.wait(timeout=120)

    def merge_into(self, stages: Stages) -> list[tuple[float, int]]:
        data = json.loads(self.result.read_text())
        for document_id, marks in data["stages"].items():
            stages.times[document_id].update(marks)
        return [(t, n) for t, n in data["calls"]]


def serve_worker(result: Path) -> None:
    """The child side of WorkerProcess: the environment (BAYOU_*) comes from the parent."""
    import bayou.engines
    from workers.embedded import start_worker_thread

    engine = FixedAnswerEngine()
    bayou.engines.get_engine = lambda name, settings=None: engine
    stages = Stages()
    stages.connect()
    worker = start_worker_thread(sweep_every_s=3600)
    sys.stdin.read()
    worker.stop()
    result.write_text(json.dumps({"calls": engine.calls, "stages": stages.times}))


PAYLOAD = png  # main() swaps in page_payload(--page)


def _upload(client: Any, seed: int) -> Uploaded:
    data = PAYLOAD(seed)  # made before the clock starts: encoding a large page is the client's cost
    started = time.time()
    response = client.post(
        "/v1/documents",
        files={"file": (f"doc{seed}.png", data, "image/png")},
        data={"doc_type": "receipt"},
    )
    answered = time.time()
    if response.status_code != 202:
        raise SystemExit(f"upload {seed}: {response.status_code} {response.text[:300]}")
    return Uploaded(response.json()["id"], started, answered)


def _stored_times(runtime: Any, ids: list[str]) -> dict[str, float]:
    from sqlalchemy import select

    from storage.models import ExtractionRun

    out: dict[str, float] = {}
    with runtime.sessions() as session:
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = session.execute(
                select(ExtractionRun.document_id, ExtractionRun.created_at).where(
                    ExtractionRun.document_id.in_(chunk)
                )
            )
            for document_id, created in rows:
                # the earliest run; more than one would show in runs_per_document
                ts = created.timestamp()
                out[document_id] = min(ts, out.get(document_id, ts))
    return out


def _run_timings(runtime: Any, ids: list[str]) -> dict[str, float]:
    """Median of each stored run's `ocr` and `locate` timings (ms; absent with OCR off)."""
    from sqlalchemy import select

    from storage.models import ExtractionRun

    parts: dict[str, list[float]] = defaultdict(list)
    with runtime.sessions() as session:
        for timings in session.scalars(
            select(ExtractionRun.timings_ms).where(ExtractionRun.document_id.in_(ids))
        ):
            for name in ("ocr", "locate"):
                if name in (timings or {}):
                    parts[name].append(timings[name])
    return {name: statistics.median(values) for name, values in parts.items()}


def _census(runtime: Any, ids: list[str]) -> tuple[dict[str, int], dict[int, int]]:
    from sqlalchemy import func, select

    from storage.models import Document, ExtractionRun

    statuses: dict[str, int] = defaultdict(int)
    runs: dict[str, int] = defaultdict(int)
    with runtime.sessions() as session:
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            for status, count in session.execute(
                select(Document.status, func.count()).where(Document.id.in_(chunk)).group_by(Document.status)
            ):
                statuses[str(getattr(status, "value", status))] += count
            for document_id, count in session.execute(
                select(ExtractionRun.document_id, func.count())
                .where(ExtractionRun.document_id.in_(chunk))
                .group_by(ExtractionRun.document_id)
            ):
                runs[document_id] = count
    histogram: dict[int, int] = defaultdict(int)
    for document_id in ids:
        histogram[runs.get(document_id, 0)] += 1
    return dict(statuses), dict(histogram)


def _wait_stored(runtime: Any, ids: list[str], timeout: float, poll: float) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        stored = _stored_times(runtime, ids)
        if len(stored) == len(ids):
            return stored
        if time.monotonic() > deadline:
            print(f"  timed out: {len(stored)}/{len(ids)} stored", file=sys.stderr)
            return stored
        time.sleep(poll)


def _warm_up(client: Any, runtime: Any, seed_base: int) -> None:
    """A few documents first: imports, schema loading and connections out of the way."""
    ids = [_upload(client, seed_base + n).document_id for n in range(3)]
    _wait_stored(runtime, ids, timeout=120, poll=0.1)


def _burst(client: Any, runtime: Any, stages: Stages, count: int, clients: int, seed_base: int) -> Phase:
    uploads: list[Uploaded] = []
    lock = threading.Lock()
    seeds = iter(range(seed_base, seed_base + count))

    def post_some() -> None:
        while True:
            with lock:
                seed = next(seeds, None)
            if seed is None:
                return
            uploaded = _upload(client, seed)
            with lock:
                uploads.append(uploaded)

    threads = [threading.Thread(target=post_some) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [u.document_id for u in uploads]
    stored = _wait_stored(runtime, ids, timeout=max(300.0, count * 0.5), poll=0.5)
    statuses, runs = _census(runtime, ids)
    return Phase(uploads, stored, statuses, runs)


def _isolated(client: Any, runtime: Any, stages: Stages, count: int, seed_base: int) -> Phase:
    uploads: list[Uploaded] = []
    stored: dict[str, float] = {}
    for n in range(count):
        uploaded = _upload(client, seed_base + n)
        uploads.append(uploaded)
        stored.update(_wait_stored(runtime, [uploaded.document_id], timeout=60, poll=0.005))
    ids = [u.document_id for u in uploads]
    statuses, runs = _census(runtime, ids)
    return Phase(uploads, stored, statuses, runs)


# --- figures ------------------------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _latencies(phase: Phase) -> list[float]:
    return [
        (phase.stored[u.document_id] - u.started) * 1000
        for u in phase.uploads
        if u.document_id in phase.stored
    ]


def _stage_medians(phase: Phase, stages: Stages) -> dict[str, float]:
    """Median ms per stage over the phase's documents."""
    parts: dict[str, list[float]] = defaultdict(list)
    for u in phase.uploads:
        t = stages.times.get(u.document_id, {})
        stored = phase.stored.get(u.document_id)
        points = [
            ("upload request", u.started, u.answered),
            ("wait for rasterise (broker)", u.answered, t.get("rasterize_start")),
            ("rasterise task", t.get("rasterize_start"), t.get("rasterize_end")),
            ("wait for extraction (broker + batcher)", t.get("rasterize_end"), t.get("extract_batch_start")),
            ("extraction task to stored run", t.get("extract_batch_start"), stored),
        ]
        for name, a, b in points:
            if a is not None and b is not None:
                parts[name].append((b - a) * 1000)
    return {name: statistics.median(values) for name, values in parts.items()}


def _summarise(
    label: str,
    backend: str,
    burst: Phase,
    isolated: Phase,
    burst_batches: list[int],
    isolated_batches: list[int],
    stages: Stages,
) -> dict[str, Any]:
    burst_lat = _latencies(burst)
    iso_lat = _latencies(isolated)
    first = min(u.started for u in burst.uploads)
    last = max(burst.stored.values()) if burst.stored else float("nan")
    uploads_done = max(u.answered for u in burst.uploads)
    sizes: dict[int, int] = defaultdict(int)
    for size in burst_batches:
        sizes[size] += 1
    return {
        "mode": label,
        "backend": backend,
        "documents": len(burst.uploads),
        "stored": len(burst.stored),
        "throughput": len(burst.stored) / (last - first) if burst.stored else 0.0,
        "upload_rate": len(burst.uploads) / (uploads_done - first),
        "burst_median_ms": _pct(burst_lat, 0.5),
        "burst_p95_ms": _pct(burst_lat, 0.95),
        "burst_statuses": burst.statuses,
        "burst_runs": burst.runs_per_document,
        "batch_calls": len(burst_batches),
        "batch_mean": statistics.mean(burst_batches) if burst_batches else 0.0,
        "batch_sizes": dict(sorted(sizes.items())),
        "burst_stages": _stage_medians(burst, stages),
        "isolated": len(isolated.uploads),
        "isolated_median_ms": _pct(iso_lat, 0.5),
        "isolated_p95_ms": _pct(iso_lat, 0.95),
        "isolated_statuses": isolated.statuses,
        "isolated_runs": isolated.runs_per_document,
        "isolated_batches": isolated_batches,
        "isolated_stages": _stage_medians(isolated, stages),
    }


def print_result(r: dict[str, Any]) -> None:
    print(
        f"\n== {r['mode']}, OCR {r['ocr']}: {r['backend']} "
        f"(load average {r['load'][0]:.1f} before, {r['load'][1]:.1f} after)"
    )
    print(
        f"burst of {r['documents']}: {r['stored']} stored, {r['throughput']:.1f} documents/s end to end "
        f"(uploads alone {r['upload_rate']:.1f}/s); latency median {r['burst_median_ms']:.0f} ms, "
        f"p95 {r['burst_p95_ms']:.0f} ms"
    )
    print(f"  statuses {r['burst_statuses']}, runs per document {r['burst_runs']}")
    print(
        f"  generate calls {r['batch_calls']}, mean {r['batch_mean']:.2f} documents/call, sizes {r['batch_sizes']}"
    )
    print("  stage medians: " + ", ".join(f"{k} {v:.1f} ms" for k, v in r["burst_stages"].items()))
    print(
        f"isolated, {r['isolated']} one at a time: latency median {r['isolated_median_ms']:.1f} ms, "
        f"p95 {r['isolated_p95_ms']:.1f} ms; statuses {r['isolated_statuses']}, runs {r['isolated_runs']}"
    )
    print("  stage medians: " + ", ".join(f"{k} {v:.1f} ms" for k, v in r["isolated_stages"].items()))
    print(
        "  run timings (median): "
        + ", ".join(f"{k} {v:.1f} ms" for k, v in r["isolated_run_timings"].items())
    )


def markdown(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        "## Pipeline overhead (bench/pipeline.py)",
        "",
        f"`python bench/pipeline.py --documents {args.documents} --isolated {args.isolated} "
        f"--clients {args.clients}{' --worker-process' if args.worker_process else ''}"
        f"{f' --ocr {args.ocr}' if args.ocr else ''}{f' --page {args.page}' if args.page else ''}` on {datetime.now(UTC):%Y-%m-%d}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}. The model is `FixedAnswerEngine` (a fixed "
        "receipt, at once): these are the costs of everything else, upload (FastAPI app, TestClient) to "
        "stored run, with the worker (`start_worker_thread`: solo pool, every queue) "
        + ("in a child process of its own." if args.worker_process else "in the same process."),
        "",
        "| mode | OCR | burst: documents/s | burst: median / p95 latency | isolated: median / p95 latency "
        "| isolated: run's ocr / locate (median) | documents per generate (burst) | load average before / after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        timings = r["isolated_run_timings"]
        lines.append(
            f"| {r['backend']} | {r['ocr']} | {r['throughput']:.1f} ({r['stored']}/{r['documents']}) "
            f"| {r['burst_median_ms']:.0f} / {r['burst_p95_ms']:.0f} ms "
            f"| {r['isolated_median_ms']:.0f} / {r['isolated_p95_ms']:.0f} ms ({r['isolated']} docs) "
            f"| {timings.get('ocr', float('nan')):.0f} / {timings.get('locate', float('nan')):.1f} ms "
            f"| mean {r['batch_mean']:.2f}, sizes {r['batch_sizes']} | {r['load'][0]:.1f} / {r['load'][1]:.1f} |"
        )
    lines += [
        "",
        f"Targets: isolated median ≤ {TARGET_MEDIAN_MS:.0f} ms embedded; ≥ {TARGET_RATE:.0f} documents/s with "
        "Redis + PostgreSQL. Stage medians, isolated (ms):",
        "",
    ]
    for r in results:
        lines.append(
            f"- {r['mode']}, OCR {r['ocr']}: "
            + ", ".join(f"{k} {v:.0f}" for k, v in r["isolated_stages"].items())
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--isolated", type=int, default=50)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--modes", default="embedded,redis")
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--postgres", default=os.environ.get("BAYOU_TEST_POSTGRES", DEFAULT_POSTGRES))
    parser.add_argument(
        "--worker-process", action="store_true", help="run the worker in a child process, not a thread"
    )
    parser.add_argument(
        "--ocr", default="", help="comma-separated BAYOU_OCR values (off,on): each mode runs once per value"
    )
    parser.add_argument("--page", type=Path, help="upload this page image instead of a small blank PNG")
    parser.add_argument("--serve-worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_worker:
        serve_worker(args.serve_worker)
        return
    if args.page:
        global PAYLOAD
        PAYLOAD = page_payload(args.page)

    import logging

    logging.basicConfig(level=logging.WARNING)
    import bayou.engines

    engine = FixedAnswerEngine()
    # the workers look the engine up here at each batch (workers.extracting imports it at call time)
    bayou.engines.get_engine = lambda name, settings=None: engine

    results = []
    ocr_values = [v.strip() for v in args.ocr.split(",") if v.strip()] or [os.environ.get("BAYOU_OCR", "")]
    for mode, ocr in [(m.strip(), o) for m in args.modes.split(",") if m.strip() for o in ocr_values]:
        if ocr:
            os.environ["BAYOU_OCR"] = {"on": "true", "off": "false"}.get(ocr, ocr)
        started = time.monotonic()
        load_before = os.getloadavg()[0]
        result = run_mode(mode, args, engine)
        result["ocr"] = ocr or "default (on)"
        result["wall_s"] = time.monotonic() - started
        # the machine may be shared: figures taken under other load are not comparable to quiet ones
        result["load"] = (load_before, os.getloadavg()[0])
        print_result(result)
        results.append(result)
    print("\n" + markdown(results, args))


if __name__ == "__main__":
    main()
