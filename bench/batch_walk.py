"""Benchmark: how long a document uploaded while a server-side batch walks waits for its result.

    python bench/batch_walk.py [--files 5000] [--uploads 10]

`bayou serve`'s embedded worker runs one task at a time, every queue. A batch's walk is a task on the `cpu`
queue: a walk held in one task keeps every document uploaded meanwhile waiting until the whole folder has
been read. The walk now yields after each slice (`bayou.intake.batches.WALK_SLICE_S`), so an upload waits
for one slice at most.

Setting: the embedded defaults (SQLite, the embedded broker) in a fresh data directory, the worker in this
process (`workers.embedded.start_worker_thread`), the model replaced by bench/pipeline.py's
`FixedAnswerEngine` (every request answered at once: only the pipeline is measured), the real FastAPI app
through Starlette's TestClient. The batch folder holds `--files` copies of one small PNG: a folder whose
content is known already (a re-scan), so the walk opens, hashes and looks up every file but creates one
document — what is measured is the walk holding the worker, not the documents it would create.

Once the batch is posted, `--uploads` documents are uploaded one after the other (the next once the last is
stored); each one's latency is from its upload to the commit of its stored run. Also printed: how long the
walk took (POST until the batch reads `done`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline import (  # noqa: E402
    FixedAnswerEngine,
    _upload,
    _wait_stored,
    _warm_up,
    api_client,
    configure,
    png,
)


def _walk_watch(client: Any, batch_id: str, done: dict[str, float], stop: threading.Event) -> None:
    while not stop.is_set():
        batch = client.get(f"/v1/batches/{batch_id}").json()
        if batch["status"] != "running":
            done["at"] = time.time()
            done["files"] = batch["total_files"]
            return
        time.sleep(0.05)


def run(files: int, uploads: int) -> dict[str, Any]:

    from workers.embedded import start_worker_thread
    from workers.runtime import get_runtime

    temp = Path(tempfile.mkdtemp(prefix="bench-batch-walk-"))
    try:
        configure(temp / "data", "", "")
        folder = temp / "data" / "inbox" / "known"
        folder.mkdir(parents=True)
        content = png(1)
        for n in range(files):
            (folder / f"scan{n:06d}.png").write_bytes(content)
        with api_client("bench-walk") as (_app, client):
            runtime = get_runtime()
            worker = start_worker_thread(sweep_every_s=3600)
            try:
                _warm_up(client, runtime, seed_base=10_000_000)
                posted = time.time()
                response = client.post(
                    "/v1/batches", json={"folder": "known", "doc_type": "receipt", "recursive": False}
                )
                if response.status_code != 202:
                    raise SystemExit(f"batch: {response.status_code} {response.text[:300]}")
                done: dict[str, float] = {}
                stop = threading.Event()
                watcher = threading.Thread(
                    target=_walk_watch, args=(client, response.json()["id"], done, stop)
                )
                watcher.start()
                latencies = []
                for n in range(uploads):
                    uploaded = _upload(client, 20_000_000 + n)
                    stored = _wait_stored(runtime, [uploaded.document_id], timeout=600, poll=0.005)
                    latencies.append((stored[uploaded.document_id] - uploaded.started) * 1000)
                watcher.join(timeout=600)
                stop.set()
            finally:
                worker.stop()
        return {
            "files": files,
            "walk_s": done.get("at", float("nan")) - posted,
            "walked": done.get("files"),
            "latencies_ms": latencies,
        }
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--uploads", type=int, default=10)
    parser.add_argument("--slice-s", type=float, help="override bayou.intake.batches.WALK_SLICE_S")
    args = parser.parse_args()
    if args.slice_s is not None:
        import bayou.intake.batches

        bayou.intake.batches.WALK_SLICE_S = args.slice_s

    import logging

    logging.basicConfig(level=logging.WARNING)
    import bayou.engines

    engine = FixedAnswerEngine()
    bayou.engines.get_engine = lambda name, settings=None: engine  # as bench/pipeline.py does

    load_before = os.getloadavg()[0]
    result = run(args.files, args.uploads)
    latencies = result["latencies_ms"]
    print(
        f"walk: {result['walked']} files in {result['walk_s']:.1f} s ({result['walked'] / result['walk_s']:.0f} files/s)"
    )
    print(
        f"uploads during the walk: first {latencies[0]:.0f} ms, median {statistics.median(latencies):.0f} ms, "
        f"max {max(latencies):.0f} ms ({len(latencies)} uploads; load {load_before:.2f} → {os.getloadavg()[0]:.2f})"
    )


if __name__ == "__main__":
    main()
