"""`bayou ingest --watch` below the CLI: a watcher thread over a real folder, stopped by its stop event;
every wait is bounded by DEADLINE_S."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bayou.ingest.job import resolve_target, run_ingest
from bayou.ingest.run import Plan
from bayou.ingest.tally import Tally
from bayou.settings import get_settings

DEADLINE_S = 10.0
# long enough for the watcher's first wake-up (which rescans anyway) to have passed: what comes after
# this is seen only through file events or polling
QUIET_S = 0.5


class LiveTally:
    """The watcher's latest counts, for the test thread to wait on."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.tally = Tally()

    def show(self, tally: Tally, pending: int) -> None:
        with self._changed:
            self.tally = tally
            self._changed.notify_all()

    def wait_for(self, condition: Callable[[Tally], bool]) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: condition(self.tally), timeout=DEADLINE_S):
                raise AssertionError(f"not within {DEADLINE_S} s; counts: {self.tally.summary()}")


@contextmanager
def watching(folder: Path, *, poll_s: float | None = None) -> Iterator[LiveTally]:
    settings = get_settings()
    live = LiveTally()
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            run_ingest(
                Plan(folder, recursive=True, settle_s=0.2, poll_s=poll_s),
                resolve_target("receipt", None, settings),
                settings,
                keep_watching=True,
                display=live,
                stop=stop,
            )
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield live
    finally:
        stop.set()
        thread.join(DEADLINE_S)
    assert not thread.is_alive(), "the watcher did not stop when asked"
    assert not errors, errors


def document_count(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "bayou.db") as connection:
        return connection.execute("SELECT count(*) FROM documents").fetchone()[0]


@pytest.mark.parametrize("poll_s", [None, 0.2], ids=["inotify", "poll"])
def test_watch_takes_files_created_after_it_started(
    ingest_env: Callable[..., Path],
    png_files: Callable[..., list[Path]],
    tmp_path: Path,
    poll_s: float | None,
) -> None:
    data_dir = ingest_env()
    folder = tmp_path / "inbox"
    png_files(folder, 1)

    with watching(folder, poll_s=poll_s) as live:
        live.wait_for(lambda t: t.queued == 1)  # what was there at the start
        time.sleep(QUIET_S)
        png_files(folder / "later", 1, start=1)
        live.wait_for(lambda t: t.queued == 2)

    assert document_count(data_dir) == 2


def test_watch_enqueues_content_once_however_often_its_file_changes(
    ingest_env: Callable[..., Path],
    png_files: Callable[..., list[Path]],
    make_png: Callable[..., bytes],
    tmp_path: Path,
) -> None:
    data_dir = ingest_env()
    folder = tmp_path / "inbox"
    folder.mkdir()

    with watching(folder) as live:
        time.sleep(QUIET_S)
        [path] = png_files(folder, 1)
        live.wait_for(lambda t: t.queued == 1)
        # touched: looked at again, but the same content is the same document
        os.utime(path, (time.time() + 5, time.time() + 5))
        live.wait_for(lambda t: t.duplicate == 1)
        # new content under the same name is a new document (written aside, then renamed into place)
        staged = folder / ".incoming"
        staged.write_bytes(make_png(9, size=(16, 16)))
        staged.replace(path)
        live.wait_for(lambda t: t.queued == 2)

    assert document_count(data_dir) == 2
