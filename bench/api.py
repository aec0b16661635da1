"""Benchmark: the upload path of the REST API, 200 KB JPEGs to POST /v1/documents.

    python bench/api.py [--duration 30] [--warmup 3] [--clients 8] [--keys 16] [--kb 200] [--images 64]

What runs: uvicorn with `api.app:create_app` (factory, one process, as `bayou serve` runs the app) on
127.0.0.1, in a subprocess, with a fresh temporary BAYOU_DATA_DIR: embedded SQLite and the embedded broker
(kombu's SQLAlchemy transport on SQLite), so each upload stores its blob and row and writes its rasterise
message to broker.db. Unlike `bayou serve`, NO embedded worker is started: it would begin extracting with
a model this machine does not have, and take the CPU the API needs; documents simply stay `queued`. So
this measures the upload path alone (receive, sniff, hash, store, enqueue), not extraction.

The client: `--clients` threads, each with its own httpx.Client (keep-alive), posting back to back for
`--warmup` then `--duration` seconds (only the latter is counted). Every upload is a distinct document:
`--images` random-noise JPEGs of about `--kb` KB (quality tuned to the size) with a unique JPEG comment
segment per request, so none is answered as a duplicate. The API limits each key to 20 requests/s
(burst 100); requests are spread over `--keys` keys so the limiter is not what is measured (429s are
counted as errors). Client and server share the machine's cores.

Prints uploads/s, latency percentiles and errors, and a markdown block for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_RATE = 100.0
TARGET_P99_MS = 500.0


# --- the payloads ---------------------------------------------------------------------------------------


def noise_jpeg(kb: int, seed: int) -> bytes:
    """A random-noise JPEG of about `kb` KB: 640x480 noise, the quality bisected to the size."""
    rng = random.Random(seed)
    image = Image.frombytes("RGB", (640, 480), rng.randbytes(640 * 480 * 3))
    target = kb * 1024
    low, high, best = 5, 95, b""
    while low <= high:
        quality = (low + high) // 2
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        data = buffer.getvalue()
        if not best or abs(len(data) - target) < abs(len(best) - target):
            best = data
        if len(data) < target:
            low = quality + 1
        else:
            high = quality - 1
    return best


def unique(jpeg: bytes, tag: str) -> bytes:
    """The same picture with a COM segment right after SOI carrying `tag`: other bytes, same image."""
    text = tag.encode()
    return jpeg[:2] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + jpeg[2:]


# --- the server -----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(
    data_dir: Path, port: int, log_path: Path, app: str, broker_url: str = ""
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "BAYOU_DATA_DIR": str(data_dir),
        "BAYOU_DATABASE_URL": "",
        "BAYOU_BROKER_URL": broker_url,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    with open(log_path, "wb") as log:
        return subprocess.Popen(command, env=env, cwd=data_dir, stdout=log, stderr=subprocess.STDOUT)


def wait_ready(base: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("the server did not come up")


def create_keys(data_dir: Path, count: int) -> list[str]:
    from api.keys import create_key
    from storage.db import make_engine, make_session_factory

    engine = make_engine(f"sqlite:///{data_dir / 'bayou.db'}")
    try:
        with make_session_factory(engine)() as session:
            return [create_key(session, f"bench-{n}-{os.getpid()}") for n in range(count)]
    finally:
        engine.dispose()


# --- the load -------------------------------------------------------------------------------------------


class Load:
    def __init__(self, base: str, keys: list[str], images: list[bytes], warmup_s: float, duration_s: float):
        self.base = base
        self.keys = keys
        self.images = images
        self.lock = threading.Lock()
        self.counter = 0
        self.start = time.monotonic() + 0.5
        self.measure_from = self.start + warmup_s
        self.end = self.measure_from + duration_s
        self.latencies_ms: list[float] = []
        self.outcomes: Counter[str] = Counter()
        self.bytes_sent = 0
        self.load_average = (float("nan"), float("nan"))  # the machine's, before and after the run

    def next_number(self) -> int:
        with self.lock:
            self.counter += 1
            return self.counter

    def client(self, index: int) -> None:
        run = f"{os.getpid()}-{time.time_ns()}"
        with httpx.Client(base_url=self.base, timeout=30) as http:
            while time.monotonic() < self.start:
                time.sleep(0.01)
            while True:
                n = self.next_number()
                body = unique(self.images[n % len(self.images)], f"bench {run} {n}")
                key = self.keys[n % len(self.keys)]
                sent = time.monotonic()
                if sent >= self.end:
                    return
                try:
                    response = http.post(
                        "/v1/documents",
                        headers={"Authorization": f"Bearer {key}"},
                        files={"file": (f"scan-{n}.jpg", body, "image/jpeg")},
                        data={"doc_type": "receipt"},
                    )
                    outcome = str(response.status_code)
                except httpx.HTTPError as error:
                    outcome = type(error).__name__
                took_ms = (time.monotonic() - sent) * 1000
                if sent >= self.measure_from:
                    with self.lock:
                        self.latencies_ms.append(took_ms)
                        self.outcomes[outcome] += 1
                        self.bytes_sent += len(body)

    def run(self, clients: int) -> None:
        threads = [threading.Thread(target=self.client, args=(i,), daemon=True) for i in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def start_profiler(args: argparse.Namespace, pid: int) -> subprocess.Popen[bytes] | None:
    """py-spy (pip install py-spy) on the server, all threads, idle ones left out, for the measured window."""
    if not args.profile:
        return None
    command = ["py-spy", "record", "--pid", str(pid), "--duration", str(int(args.duration)), "--rate", "200"]
    delay = 0.5 + args.warmup
    return subprocess.Popen(
        ["sh", "-c", f"sleep {delay} && {' '.join(command)} --format raw -o {args.profile}.txt"],
    )


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=30.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--keys", type=int, default=16, help="API keys the requests are spread over")
    parser.add_argument("--kb", type=int, default=200, help="JPEG size")
    parser.add_argument("--images", type=int, default=16, help="distinct noise pictures")
    parser.add_argument(
        "--app", default="api.app:create_app", help="the app factory uvicorn runs (to compare variants)"
    )
    parser.add_argument(
        "--broker-url", default="", help="a broker server instead of the embedded one (e.g. redis://...)"
    )
    parser.add_argument(
        "--profile",
        metavar="PATH",
        help="py-spy the server over the measured window: PATH.txt (raw) and .svg",
    )
    args = parser.parse_args()

    images = [noise_jpeg(args.kb, seed) for seed in range(args.images)]
    mean_kb = statistics.mean(len(image) for image in images) / 1024
    with tempfile.TemporaryDirectory(prefix="bayou-bench-api-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        process = start_server(data_dir, port, Path(tmp) / "server.log", args.app, args.broker_url)
        try:
            wait_ready(base, process)
            keys = create_keys(data_dir, args.keys)
            load = Load(base, keys, images, args.warmup, args.duration)
            print(
                f"uploading {mean_kb:.0f} KB JPEGs with {args.clients} clients for {args.warmup:g}+"
                f"{args.duration:g} s to {base} (server pid {process.pid}) ...",
                flush=True,
            )
            profiler = start_profiler(args, process.pid)
            load_before = os.getloadavg()[0]
            load.run(args.clients)
            # the machine may be shared: figures taken under other load are not comparable to quiet ones
            load.load_average = (load_before, os.getloadavg()[0])
            if profiler is not None:
                profiler.wait()
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
            log_tail = (Path(tmp) / "server.log").read_text(errors="replace")[-2000:]
    report(args, load, mean_kb, log_tail)


def report(args: argparse.Namespace, load: Load, mean_kb: float, log_tail: str) -> None:
    created = load.outcomes.get("202", 0)
    total = sum(load.outcomes.values())
    errors = total - created
    rate = created / args.duration
    p50, p95, p99 = (percentile(load.latencies_ms, q) for q in (50, 95, 99))
    worst = max(load.latencies_ms, default=float("nan"))
    mib_s = load.bytes_sent / args.duration / (1 << 20)
    verdict = "meets" if rate >= TARGET_RATE and p99 < TARGET_P99_MS and errors == 0 else "misses"
    outcomes = ", ".join(f"{code}: {count}" for code, count in sorted(load.outcomes.items()))
    print(f"\nresponses: {outcomes}")
    if errors and log_tail.strip():
        print(f"server log (tail):\n{log_tail}")
    cpu = os.cpu_count()
    broker = "broker " + args.broker_url.split("@")[-1] if args.broker_url else "embedded broker (SQLite)"
    print(
        f"""
## API uploads: {mean_kb:.0f} KB JPEGs to POST /v1/documents (`python bench/api.py{"" if args.app == "api.app:create_app" else " --app " + args.app}`)

{datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, {cpu} cores, Python {platform.python_version()}; uvicorn with
`{args.app}`, one process, embedded SQLite, {broker}, no worker (documents stay queued: the upload
path only); {args.clients} client threads (httpx, keep-alive) on the same machine, {args.warmup:g} s warm-up,
{args.duration:g} s measured; every upload a distinct document, spread over {args.keys} API keys; load average
{load.load_average[0]:.1f} before, {load.load_average[1]:.1f} after.

| uploads/s | MiB/s | p50 (ms) | p95 (ms) | p99 (ms) | max (ms) | requests | errors |
| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
| {rate:.1f} | {mib_s:.1f} | {p50:.0f} | {p95:.0f} | {p99:.0f} | {worst:.0f} | {total} | {errors} |

Target ≥ {TARGET_RATE:.0f} uploads/s sustained with p99 < {TARGET_P99_MS:.0f} ms: **{verdict}** it.
"""
    )


if __name__ == "__main__":
    main()
