"""The content-addressed blob store: layout, streaming, atomic writes, confinement, locks."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from pathlib import Path

import pytest

from storage import blobs as blobs_module
from storage.blobs import BlobStore
from storage.errors import BlobTooLarge, InvalidBlobHash, NotFound


def _leftovers(store: BlobStore) -> list[Path]:
    """Every file in the store except the lock files."""
    return [p for p in store.root.rglob("*") if p.is_file() and ".locks" not in p.parts]


def test_put_bytes_is_addressed_by_sha256(blob_store: BlobStore) -> None:
    data = b"receipt bytes"
    sha = hashlib.sha256(data).hexdigest()

    stored = blob_store.put_bytes(data)

    assert (stored.sha256, stored.size) == (sha, len(data))
    assert blob_store.path(sha) == blob_store.root / sha[:2] / sha[2:]
    assert blob_store.exists(sha)
    with blob_store.open(sha) as handle:
        assert handle.read() == data
    assert list(blob_store.iter_hashes()) == [sha]


def test_put_file_from_a_path(blob_store: BlobStore, tmp_path: Path) -> None:
    source = tmp_path / "scan.pdf"
    source.write_bytes(b"%PDF-1.7 fake")
    stored = blob_store.put_file(source)
    assert blob_store.path(stored.sha256).read_bytes() == b"%PDF-1.7 fake"


class _ChunkRecorder(io.RawIOBase):
    """A stream of `size` bytes that remembers how much each read asked for."""

    def __init__(self, size: int) -> None:
        self._left = size
        self.requests: list[int] = []

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        self.requests.append(n)
        take = self._left if n is None or n < 0 else min(n, self._left)
        self._left -= take
        return b"x" * take


def test_put_file_streams_in_bounded_chunks(blob_store: BlobStore) -> None:
    size = 5 * 1024 * 1024
    stream = _ChunkRecorder(size)

    stored = blob_store.put_file(stream)

    assert stored.size == size
    assert stored.sha256 == hashlib.sha256(b"x" * size).hexdigest()
    assert all(0 < n <= 1 << 20 for n in stream.requests), "the whole stream must never be read at once"


def test_same_content_twice_is_one_blob(blob_store: BlobStore) -> None:
    first = blob_store.put_bytes(b"same")
    second = blob_store.put_bytes(b"same")
    assert first == second
    assert len(_leftovers(blob_store)) == 1


class _BreaksAfter(io.RawIOBase):
    def __init__(self, good: bytes) -> None:
        self._good = good

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self._good:
            chunk, self._good = self._good, b""
            return chunk
        raise OSError("connection reset by client")


def test_a_stream_that_breaks_leaves_nothing(blob_store: BlobStore) -> None:
    with pytest.raises(OSError, match="connection reset"):
        blob_store.put_file(_BreaksAfter(b"half an upload"))
    assert _leftovers(blob_store) == []


def test_a_failed_rename_leaves_no_blob_and_no_temp_file(
    blob_store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_space(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(blobs_module.os, "replace", no_space)
    with pytest.raises(OSError, match="No space"):
        blob_store.put_bytes(b"never stored")
    assert _leftovers(blob_store) == []


def test_the_final_path_appears_only_complete(blob_store: BlobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    # whatever a reader can see under the final name must already hold every byte
    seen: list[bytes] = []
    real_replace = os.replace

    def watching_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        assert not Path(dst).exists()
        seen.append(Path(src).read_bytes())
        real_replace(src, dst)

    monkeypatch.setattr(blobs_module.os, "replace", watching_replace)
    data = os.urandom(3 * (1 << 20) + 17)
    blob_store.put_bytes(data)
    assert seen == [data]


def test_max_bytes_refuses_and_leaves_nothing(blob_store: BlobStore) -> None:
    with pytest.raises(BlobTooLarge):
        blob_store.put_file(io.BytesIO(b"y" * 100), max_bytes=99)
    assert _leftovers(blob_store) == []
    assert blob_store.put_file(io.BytesIO(b"y" * 99), max_bytes=99).size == 99


@pytest.mark.parametrize(
    "bad",
    [
        "../" * 10 + "etc/passwd",
        "/etc/passwd",
        "A" * 64,  # upper case: two spellings of one hash would be two files
        "a" * 63,
        "a" * 65,
        "a" * 62 + "/x",
        "g" * 64,
        "",
        None,
    ],
)
def test_hashes_that_are_not_64_hex_digits_are_refused(blob_store: BlobStore, bad: object) -> None:
    for operation in (blob_store.path, blob_store.exists, blob_store.open, blob_store.delete):
        with pytest.raises(InvalidBlobHash):
            operation(bad)  # type: ignore[arg-type]


def test_open_and_delete_of_a_missing_blob(blob_store: BlobStore) -> None:
    missing = "0" * 64
    with pytest.raises(NotFound):
        blob_store.open(missing)
    assert blob_store.delete(missing) is False
    stored = blob_store.put_bytes(b"gone soon")
    assert blob_store.delete(stored.sha256) is True
    assert not blob_store.exists(stored.sha256)


def test_an_exclusive_lock_waits_for_shared_holders(blob_store: BlobStore) -> None:
    sha = "ab" + "0" * 62
    acquired = threading.Event()

    def take_exclusive() -> None:
        with blob_store.lock(sha, exclusive=True):
            acquired.set()

    with blob_store.lock(sha):
        thread = threading.Thread(target=take_exclusive)
        thread.start()
        assert not acquired.wait(0.2), "exclusive lock granted while a shared lock was held"
    thread.join(5)
    assert acquired.is_set()


def test_stale_temp_files_are_removed(blob_store: BlobStore) -> None:
    stale = blob_store.root / ".tmp" / "put-crashed"
    stale.write_bytes(b"partial")
    os.utime(stale, (1, 1))
    assert blob_store.remove_stale_temp_files(min_age_s=60) == 1
    assert not stale.exists()
