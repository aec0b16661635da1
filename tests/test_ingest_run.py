"""bayou.ingest end to end below the CLI: real SQLite, real blob store, the real workers.enqueue into the
embedded broker (each test has its own data dir)."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bayou.ingest.job import Report, resolve_target, run_ingest
from bayou.ingest.run import Plan
from bayou.ingest.tally import Tally
from bayou.settings import get_settings


class NoDisplay:
    def show(self, tally: Tally, pending: int) -> None:
        pass


class StopAfter:
    """A display that asks the run to stop once `count` files are handled, as Ctrl-C would."""

    def __init__(self, stop: threading.Event, count: int) -> None:
        self.stop = stop
        self.count = count

    def show(self, tally: Tally, pending: int) -> None:
        if tally.handled >= self.count:
            self.stop.set()


def ingest(
    folder: Path,
    *,
    recursive: bool = False,
    settle_s: float = 0.0,
    doc_type: str = "receipt",
    display: object | None = None,
    stop: threading.Event | None = None,
) -> Report:
    settings = get_settings()
    return run_ingest(
        Plan(folder, recursive=recursive, settle_s=settle_s),
        resolve_target(doc_type, None, settings),
        settings,
        keep_watching=False,
        display=display or NoDisplay(),
        stop=stop or threading.Event(),
    )


def documents(data_dir: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(data_dir / "bayou.db") as connection:
        return connection.execute("SELECT content_sha256, filename, status FROM documents").fetchall()


def broker_messages(data_dir: Path) -> int:
    path = data_dir / "broker.db"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as connection:
        return connection.execute("SELECT count(*) FROM kombu_message").fetchone()[0]


def stored_blobs(data_dir: Path) -> list[Path]:
    root = data_dir / "blobs"
    return [p for p in root.glob("??/*")] if root.exists() else []


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_a_thousand_files_ingested_twice_are_a_thousand_documents_enqueued_once(
    ingest_env: Callable[..., Path], png_files: Callable[..., list[Path]], tmp_path: Path
) -> None:
    data_dir = ingest_env()
    folder = tmp_path / "inbox"
    png_files(folder, 1000)

    started = time.monotonic()
    first = ingest(folder)
    second = ingest(folder)
    elapsed = time.monotonic() - started

    assert (first.tally.queued, first.tally.duplicate, first.tally.refused_total) == (1000, 0, 0)
    assert (second.tally.queued, second.tally.duplicate, second.tally.refused_total) == (0, 1000, 0)
    assert first.completed and second.completed
    assert len(documents(data_dir)) == 1000
    assert broker_messages(data_dir) == 1000
    assert first.tally.unsent == 0
    # about 5 s on an idle machine (most of it fsyncs: blob, row, broker message); a guard against a
    # per-file cost that grows with the folder (a rescan per file, say), with room for a busy machine
    assert elapsed < 45, f"two runs over 1,000 files took {elapsed:.1f} s"


def test_the_same_content_under_different_names_is_one_document(
    ingest_env: Callable[..., Path], png_files: Callable[..., list[Path]], tmp_path: Path
) -> None:
    data_dir = ingest_env()
    folder = tmp_path / "inbox"
    [original] = png_files(folder, 1)
    (folder / "copy.png").write_bytes(original.read_bytes())
    (folder / "nested").mkdir()
    (folder / "nested" / "again.jpg").write_bytes(original.read_bytes())

    report = ingest(folder, recursive=True)

    assert (report.tally.queued, report.tally.duplicate) == (1, 2)
    assert [row[0] for row in documents(data_dir)] == [sha256(original)]
    assert broker_messages(data_dir) == 1


def test_refused_files_are_counted_by_code_and_leave_nothing_behind(
    ingest_env: Callable[..., Path], make_png: Callable[..., bytes], tmp_path: Path
) -> None:
    data_dir = ingest_env()
    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.png").write_bytes(b"just some text, not an image\n")
    (folder / "truncated.png").write_bytes(make_png(1)[:20])  # the PNG signature, half a header

    report = ingest(folder)

    assert report.tally.queued == 0
    assert dict(report.tally.refused) == {"empty_file": 1, "unsupported_type": 1, "corrupt_file": 1}
    assert documents(data_dir) == []
    assert stored_blobs(data_dir) == []
    assert broker_messages(data_dir) == 0


def test_a_symlink_leading_outside_the_folder_is_ignored(
    ingest_env: Callable[..., Path], png_files: Callable[..., list[Path]], tmp_path: Path
) -> None:
    data_dir = ingest_env()
    folder = tmp_path / "inbox"
    [inside] = png_files(folder, 1)
    [outside] = png_files(tmp_path / "elsewhere", 1, start=7)
    (folder / "link.png").symlink_to(outside)

    report = ingest(folder)

    assert report.tally.handled == 1
    assert [row[0] for row in documents(data_dir)] == [sha256(inside)]


def test_a_directory_swapped_for_a_link_outside_after_the_listing_is_refused_not_read(
    ingest_env: Callable[..., Path],
    png_files: Callable[..., list[Path]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The CLI holds a file to the identity its listing checked, as a server-side batch does: a directory
    above it replaced by a link to one outside, holding a file of the same name, is not read (a look just
    before opening would see a regular file there and read it)."""
    from bayou.ingest import record

    data_dir = ingest_env()
    folder = tmp_path / "inbox"
    [inside] = png_files(folder / "scans", 1)
    [outside] = png_files(tmp_path / "elsewhere", 1, start=7)
    outside.rename(tmp_path / "elsewhere" / inside.name)
    real_take = record.take_file

    def swapped_after_the_listing(session, blobs, path, **kwargs):
        (folder / "scans").rename(folder / "scans-before")
        (folder / "scans").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
        return real_take(session, blobs, path, **kwargs)

    monkeypatch.setattr(record, "take_file", swapped_after_the_listing)
    report = ingest(folder, recursive=True)

    assert dict(report.tally.refused) == {"file_changed": 1}
    assert documents(data_dir) == [] and stored_blobs(data_dir) == []


def test_a_file_still_being_written_is_taken_only_once_settled(
    ingest_env: Callable[..., Path], make_png: Callable[..., bytes], tmp_path: Path
) -> None:
    data_dir = ingest_env()
    folder = tmp_path / "inbox"
    folder.mkdir()
    content = make_png(3, size=(200, 200))
    growing = folder / "scan.png"
    # the first bytes alone already pass the cheap look (signature and header): only settling waits
    growing.write_bytes(content[:64])
    done = threading.Event()

    def writer() -> None:
        for end in range(64, len(content) + 16, 16):
            time.sleep(0.05)
            with growing.open("r+b") as handle:
                handle.seek(0)
                handle.write(content[:end])
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        report = ingest(folder, settle_s=0.4)
    finally:
        thread.join()

    assert done.is_set()
    assert report.tally.queued == 1
    assert [row[0] for row in documents(data_dir)] == [hashlib.sha256(content).hexdigest()]


def test_a_stopped_run_continues_where_it_stopped(
    ingest_env: Callable[..., Path], png_files: Callable[..., list[Path]], tmp_path: Path
) -> None:
    data_dir = ingest_env()
    folder = tmp_path / "inbox"
    png_files(folder, 20)
    stop = threading.Event()

    first = ingest(folder, display=StopAfter(stop, 5), stop=stop)
    second = ingest(folder)

    assert not first.completed and first.tally.queued == 5
    assert second.completed and (second.tally.queued, second.tally.duplicate) == (15, 5)
    assert len(documents(data_dir)) == 20
    assert broker_messages(data_dir) == 20  # nothing recorded before was sent again


def test_an_unreachable_broker_is_tried_once_and_documents_stay_queued(
    ingest_env: Callable[..., Path], png_files: Callable[..., list[Path]], tmp_path: Path
) -> None:
    # port 1 on localhost: nothing listens, the connection is refused at once
    data_dir = ingest_env(broker_url="redis://127.0.0.1:1/0")
    folder = tmp_path / "inbox"
    png_files(folder, 5)

    started = time.monotonic()
    report = ingest(folder)

    assert time.monotonic() - started < 10
    assert (report.tally.queued, report.tally.unsent) == (5, 5)
    assert "enqueue failed" in (report.tally.unsent_reason or "")
    assert len(documents(data_dir)) == 5


def test_a_file_uploaded_through_the_api_and_then_ingested_is_one_document(
    ingest_env: Callable[..., Path],
    api_client: TestClient,
    api_data_dir: Path,
    make_png: Callable[..., bytes],
    tmp_path: Path,
) -> None:
    content = make_png(5, size=(16, 16))
    uploaded = api_client.post(
        "/v1/documents", files={"file": ("r.png", content, "image/png")}, data={"doc_type": "receipt"}
    )
    assert uploaded.status_code == 202
    ingest_env(data_dir=api_data_dir)
    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "same-receipt.png").write_bytes(content)

    report = ingest(folder)

    assert (report.tally.queued, report.tally.duplicate) == (0, 1)
    assert len(documents(api_data_dir)) == 1


def test_the_model_named_is_stored_and_files_over_the_size_limit_are_refused(
    ingest_env: Callable[..., Path],
    png_files: Callable[..., list[Path]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data_dir = ingest_env()
    monkeypatch.setenv("BAYOU_MAX_UPLOAD_MB", "1")
    get_settings.cache_clear()
    folder = tmp_path / "inbox"
    [small] = png_files(folder, 1)
    (folder / "huge.png").write_bytes(small.read_bytes() + b"\0" * (1 << 20))
    settings = get_settings()

    report = run_ingest(
        Plan(folder, recursive=False, settle_s=0),
        resolve_target("receipt", "h2ovl-2b", settings),
        settings,
        keep_watching=False,
        display=NoDisplay(),
        stop=threading.Event(),
    )

    assert report.tally.queued == 1 and dict(report.tally.refused) == {"too_large": 1}
    with sqlite3.connect(data_dir / "bayou.db") as connection:
        assert connection.execute("SELECT model FROM documents").fetchall() == [("h2ovl-2b",)]
