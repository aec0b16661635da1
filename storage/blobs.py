"""A content-addressed blob store on disk: `root/ab/cdef…` where `abcdef…` is the SHA-256 of the bytes.

Writes are atomic (temp file, fsync, rename), so a reader never sees a partial blob. Blobs are the uploads
themselves: files are 0600 (mkstemp's mode, kept by the rename) in directories made 0700, and the data
directory holding the store is made (or tightened to) 0700 as well. Deleting a blob that
a concurrent writer is about to reference is prevented by advisory locks (see `lock`), which callers that
decide reference counts in the database hold across their write and their commit.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import re
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from storage.errors import BlobTooLarge, InvalidBlobHash, NotFound
from storage.permissions import PRIVATE_DIR, private_dir

_HASH = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20
_TMP_DIR = ".tmp"
_LOCK_DIR = ".locks"


@dataclass(frozen=True)
class StoredBlob:
    sha256: str
    size: int


def check_hash(sha256: str) -> str:
    """The hash itself if it is 64 lowercase hex characters; anything else could escape the store."""
    if not isinstance(sha256, str) or not _HASH.fullmatch(sha256):
        raise InvalidBlobHash(f"not a SHA-256 hex digest: {sha256!r}")
    return sha256


class StagedBlob:
    """Bytes hashed into a temp file inside the store, not yet visible under their hash."""

    def __init__(self, store: BlobStore, temp_path: Path, sha256: str, size: int) -> None:
        self._store = store
        self._temp_path = temp_path
        self.sha256 = sha256
        self.size = size

    def commit(self) -> StoredBlob:
        final = self._store.path(self.sha256)
        final.parent.mkdir(mode=PRIVATE_DIR, exist_ok=True)
        # an existing file already holds these exact bytes (they name it); replacing it is harmless
        os.replace(self._temp_path, final)
        _fsync_dir(final.parent)
        return StoredBlob(self.sha256, self.size)

    def discard(self) -> None:
        self._temp_path.unlink(missing_ok=True)


class BlobStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._tmp = self.root / _TMP_DIR
        self._locks = self.root / _LOCK_DIR
        private_dir(self.root)
        self._tmp.mkdir(mode=PRIVATE_DIR, exist_ok=True)
        self._locks.mkdir(mode=PRIVATE_DIR, exist_ok=True)

    @classmethod
    def in_data_dir(cls, data_dir: str | Path) -> BlobStore:
        # every process that shares the data dir (API, workers, ingest) opens its blob store: the place
        # where a data dir made loose (by an older version, or by hand) is tightened
        return cls(private_dir(data_dir) / "blobs")

    def path(self, sha256: str) -> Path:
        check_hash(sha256)
        return self.root / sha256[:2] / sha256[2:]

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def open(self, sha256: str) -> BinaryIO:
        try:
            return self.path(sha256).open("rb")
        except FileNotFoundError:
            raise NotFound(f"no blob {sha256}") from None

    def delete(self, sha256: str) -> bool:
        """Removes the blob; False if it was not there. Callers that track references hold `lock`."""
        try:
            self.path(sha256).unlink()
        except FileNotFoundError:
            return False
        return True

    def put_bytes(self, data: bytes) -> StoredBlob:
        return self.put_file(io.BytesIO(data))

    def put_file(self, source: str | Path | BinaryIO, *, max_bytes: int | None = None) -> StoredBlob:
        with self.stage(source, max_bytes=max_bytes) as staged, self.lock(staged.sha256):
            return staged.commit()

    @contextmanager
    def stage(self, source: str | Path | BinaryIO, *, max_bytes: int | None = None) -> Iterator[StagedBlob]:
        """Streams `source` into a temp file while hashing it (never whole in memory). The temp file is
        removed on leaving unless `commit` moved it into place."""
        with ExitStack() as stack:
            stream = source if _is_stream(source) else stack.enter_context(Path(source).open("rb"))
            fd, name = tempfile.mkstemp(dir=self._tmp, prefix="put-")
            temp_path = Path(name)
            try:
                with os.fdopen(fd, "wb") as out:
                    sha256, size = _copy_hashing(stream, out, max_bytes)
                    out.flush()
                    os.fsync(out.fileno())
                yield StagedBlob(self, temp_path, sha256, size)
            finally:
                temp_path.unlink(missing_ok=True)

    @contextmanager
    def lock(self, sha256: str, *, exclusive: bool = False) -> Iterator[None]:
        """An advisory lock on one hash, across threads and processes on this host. Writers that are
        about to reference a blob hold it shared; whoever deletes an unreferenced blob holds it
        exclusive, and so never deletes between another writer's file write and its commit."""
        with self.lock_many([sha256], exclusive=exclusive):
            yield

    @contextmanager
    def lock_many(self, hashes: Iterable[str], *, exclusive: bool = False) -> Iterator[None]:
        # striped by the first two hex digits: 256 lock files, taken in sorted order so two holders of
        # several stripes cannot deadlock
        stripes = sorted({check_hash(h)[:2] for h in hashes})
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        with ExitStack() as stack:
            for stripe in stripes:
                handle = stack.enter_context((self._locks / stripe).open("a+b"))
                fcntl.flock(handle.fileno(), mode)
            yield

    def iter_hashes(self) -> Iterator[str]:
        for directory in sorted(self.root.iterdir()):
            if len(directory.name) != 2 or not directory.is_dir():
                continue
            for entry in sorted(directory.iterdir()):
                candidate = directory.name + entry.name
                if _HASH.fullmatch(candidate):
                    yield candidate

    def age_seconds(self, sha256: str) -> float:
        return time.time() - self.path(sha256).stat().st_mtime

    def remove_stale_temp_files(self, *, min_age_s: float) -> int:
        """Temp files left by a killed process; young ones may still be being written."""
        removed = 0
        cutoff = time.time() - min_age_s
        for entry in self._tmp.iterdir():
            if entry.stat().st_mtime < cutoff:
                entry.unlink(missing_ok=True)
                removed += 1
        return removed


def _is_stream(source: object) -> bool:
    return hasattr(source, "read")


def _copy_hashing(stream: BinaryIO, out: BinaryIO, max_bytes: int | None) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    while chunk := stream.read(_CHUNK):
        size += len(chunk)
        if max_bytes is not None and size > max_bytes:
            raise BlobTooLarge(f"more than {max_bytes} bytes")
        digest.update(chunk)
        out.write(chunk)
    return digest.hexdigest(), size


def _fsync_dir(directory: Path) -> None:
    # the rename itself is durable only once the directory entry is on disk
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
