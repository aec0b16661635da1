"""bayou.intake: refusals are typed InputErrors with stable codes (no HTTP in them), a refused file
leaves nothing stored, and neither the intake nor `bayou ingest` needs the web package."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bayou.intake import Limits, candidate_files, inspect, store_file, take_file
from extractor.errors import InputError
from storage.models import Document
from tests.imaging import many_directory_tiff

LIMITS = Limits(max_bytes=4096, max_pages=2, max_pixels=10_000)


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"", "empty_file"),
        (b"plain text, no magic", "unsupported_type"),
        (b"%PDF-1.7\n%%EOF", "corrupt_file"),
    ],
)
def test_inspect_refuses_with_typed_codes(content, code):
    with pytest.raises(InputError) as refused:
        inspect(io.BytesIO(content), LIMITS)
    assert refused.value.code == code


def test_inspect_names_the_media_type_and_rewinds(make_png):
    stream = io.BytesIO(make_png(1))
    assert inspect(stream, LIMITS) == "image/png"
    assert stream.tell() == 0


def test_a_file_over_the_size_cap_is_refused_and_leaves_nothing(db_session, blob_store, make_png, tmp_path):
    big = make_png(2) + b"\0" * LIMITS.max_bytes
    with pytest.raises(InputError) as refused:
        store_file(
            db_session,
            blob_store,
            source=io.BytesIO(big),
            filename="big.png",
            media_type="image/png",
            doc_type="receipt",
            model=None,
            limits=LIMITS,
        )
    assert refused.value.code == "too_large"
    path = tmp_path / "big.png"
    path.write_bytes(big)
    with pytest.raises(InputError, match="over"):
        take_file(db_session, blob_store, path, doc_type="receipt", model=None, limits=LIMITS)
    assert db_session.scalar(select(func.count()).select_from(Document)) == 0
    assert list(blob_store.iter_hashes()) == []


def test_taking_the_same_content_twice_is_one_document(db_session, blob_store, make_png, tmp_path):
    first, second = tmp_path / "a.png", tmp_path / "copy.png"
    first.write_bytes(make_png(3))
    second.write_bytes(make_png(3))
    taken = take_file(db_session, blob_store, first, doc_type="receipt", model="h2ovl-800m", limits=LIMITS)
    again = take_file(db_session, blob_store, second, doc_type="receipt", model="h2ovl-800m", limits=LIMITS)
    assert taken.created and not again.created and again.document.id == taken.document.id


def test_intake_and_ingest_do_not_import_the_web_package():
    code = (
        "import sys, bayou.intake, bayou.ingest.job, bayou.ingest.record, bayou.ingest.scan\n"
        "web = sorted(m for m in sys.modules if m == 'api' or m.startswith(('api.', 'fastapi')))\n"
        "assert not web, web\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_file_that_cannot_be_read_is_refused_as_unreadable_without_its_name(
    db_session, blob_store, tmp_path
):
    missing = tmp_path / "JANE-DOE-licence.png"  # gone between the folder listing and the read
    with pytest.raises(InputError) as refused:
        take_file(db_session, blob_store, missing, doc_type="drivers_license", model=None, limits=LIMITS)
    assert refused.value.code == "unreadable"
    assert "JANE" not in refused.value.message


def test_a_store_that_cannot_write_is_not_the_files_fault(
    db_session, blob_store, make_png, tmp_path, monkeypatch
):
    import errno

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(blob_store, "stage", disk_full)
    path = tmp_path / "fine.png"
    path.write_bytes(make_png(3))
    # an OSError, not a refusal: a batch walk fails (and is resumed) instead of counting every file refused
    with pytest.raises(OSError) as caught:
        take_file(db_session, blob_store, path, doc_type="receipt", model=None, limits=LIMITS)
    assert not isinstance(caught.value, InputError) and caught.value.errno == errno.ENOSPC
    assert db_session.scalar(select(func.count()).select_from(Document)) == 0


def test_a_tiff_of_40000_pages_is_refused_without_reading_every_page_directory():
    # 4.6 MB; PIL's n_frames reads all 40,000 directories first (20 s of CPU here) before any cap is compared
    bomb = many_directory_tiff(40_000)
    started = time.process_time()
    with pytest.raises(InputError) as refused:
        inspect(io.BytesIO(bomb), LIMITS)
    assert refused.value.code == "too_many_pages"
    assert time.process_time() - started < 1.0


def test_a_tiff_within_the_page_cap_passes_and_one_over_it_is_refused():
    assert inspect(io.BytesIO(many_directory_tiff(LIMITS.max_pages)), LIMITS) == "image/tiff"
    with pytest.raises(InputError) as refused:
        inspect(io.BytesIO(many_directory_tiff(LIMITS.max_pages + 1)), LIMITS)
    assert refused.value.code == "too_many_pages"


def _take_within(seconds: float, *args, **kwargs) -> InputError | object:
    """take_file's refusal or result; a take still blocked after `seconds` fails the test (the thread is
    left behind, a daemon, rather than hanging the run)."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(take_file(*args, **kwargs))
        except InputError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "take_file blocked"
    return outcome[0]


def test_a_fifo_is_refused_at_once_not_read(db_session, blob_store, tmp_path):
    fifo = tmp_path / "scan.png"
    os.mkfifo(fifo)
    refused = _take_within(5, db_session, blob_store, fifo, doc_type="receipt", model=None, limits=LIMITS)
    assert isinstance(refused, InputError) and refused.code == "not_a_regular_file"


def _checked(folder: Path, name: str):
    [candidate] = [c for c in candidate_files(folder, folder, recursive=True) if c.relative == name]
    return candidate


@pytest.fixture
def folders_for_a_swap(tmp_path, make_png) -> tuple[Path, Path]:
    inbox, outside = tmp_path / "inbox", tmp_path / "outside"
    (inbox / "sub").mkdir(parents=True)
    outside.mkdir()
    (inbox / "sub" / "scan.png").write_bytes(make_png(1))
    (outside / "scan.png").write_bytes(make_png(2))  # a licence the batch must never read
    return inbox, outside


def _nothing_stored(db_session, blob_store) -> bool:
    return db_session.scalar(select(func.count()).select_from(Document)) == 0 and not list(
        blob_store.iter_hashes()
    )


def _as_checked(candidate) -> dict:
    """take_file's options for the file a walk checked: against the identity the check recorded."""
    return {"doc_type": "receipt", "model": None, "limits": LIMITS, "expected": candidate.identity}


def _take_checked(db_session, blob_store, candidate):
    return take_file(db_session, blob_store, candidate.path, **_as_checked(candidate))


def test_a_file_swapped_for_a_symlink_after_the_check_is_refused(db_session, blob_store, folders_for_a_swap):
    inbox, outside = folders_for_a_swap
    candidate = _checked(inbox, "sub/scan.png")
    candidate.path.unlink()
    candidate.path.symlink_to(outside / "scan.png")
    with pytest.raises(InputError) as refused:
        _take_checked(db_session, blob_store, candidate)
    assert refused.value.code == "file_changed"
    assert _nothing_stored(db_session, blob_store)


def test_a_directory_swapped_for_a_symlink_after_the_check_is_refused(
    db_session, blob_store, folders_for_a_swap
):
    inbox, outside = folders_for_a_swap
    candidate = _checked(inbox, "sub/scan.png")
    (inbox / "sub").rename(inbox / "old")
    (inbox / "sub").symlink_to(outside, target_is_directory=True)  # O_NOFOLLOW alone would follow this
    with pytest.raises(InputError) as refused:
        _take_checked(db_session, blob_store, candidate)
    assert refused.value.code == "file_changed"
    assert _nothing_stored(db_session, blob_store)


def test_a_file_swapped_for_a_fifo_after_the_check_is_refused_without_blocking(
    db_session, blob_store, folders_for_a_swap, monkeypatch
):
    inbox, _ = folders_for_a_swap
    candidate = _checked(inbox, "sub/scan.png")
    real_lstat = os.lstat

    def swapped_just_after_the_look(path, *args, **kwargs):
        # the look before opening still sees the file; the FIFO is there by the time it is opened
        status = real_lstat(path, *args, **kwargs)
        if Path(path) == candidate.path and not Path(path).is_fifo():
            Path(path).unlink()
            os.mkfifo(path)
        return status

    monkeypatch.setattr(os, "lstat", swapped_just_after_the_look)
    refused = _take_within(5, db_session, blob_store, candidate.path, **_as_checked(candidate))
    assert isinstance(refused, InputError) and refused.code == "not_a_regular_file"
