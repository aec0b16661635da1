"""Files on disk are their owner's only: the data directory 0700, the SQLite database, its WAL and SHM
0600, blobs 0600 in 0700 directories, whatever the umask; looser ones found at start are tightened."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from bayou.secrets_store import installation_secret
from storage.blobs import BlobStore
from storage.db import make_engine


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    # 022, the common default: what made the files 0644 in 0755 directories
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def write_in_wal_mode(url: str) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE IF NOT EXISTS t (licence TEXT)"))
            connection.execute(text("INSERT INTO t VALUES ('D1234567')"))
        # the WAL and SHM files exist while a connection is open
        with engine.connect() as connection:
            connection.execute(text("SELECT count(*) FROM t"))
            database = Path(url.removeprefix("sqlite:///"))
            companions = [database.with_name(database.name + suffix) for suffix in ("-wal", "-shm")]
            assert all(path.exists() for path in companions)
            assert [mode(path) for path in companions] == [0o600, 0o600]
    finally:
        engine.dispose()


def test_a_new_sqlite_database_and_its_wal_and_shm_are_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "bayou-data"
    write_in_wal_mode(f"sqlite:///{data_dir / 'bayou.db'}")
    assert mode(data_dir) == 0o700
    assert mode(data_dir / "bayou.db") == 0o600


def test_an_existing_loose_database_is_tightened_on_start(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    database = shared / "bayou.db"
    write_in_wal_mode(f"sqlite:///{database}")
    companions = [shared / "bayou.db-wal", shared / "bayou.db-shm"]
    engine = make_engine(f"sqlite:///{database}")
    with engine.connect() as connection:  # holds the WAL and SHM open, as a running process would
        connection.execute(text("SELECT 1"))
        for path in (database, *companions):
            path.chmod(0o644)
        make_engine(f"sqlite:///{database}").dispose()  # the next process starting
        assert [mode(path) for path in (database, *companions)] == [0o600] * 3
    engine.dispose()
    # a directory named in the URL that exists already is not ours to change
    assert mode(shared) == 0o755


def test_blobs_and_the_data_dir_are_private_and_a_loose_data_dir_is_tightened(tmp_path: Path) -> None:
    data_dir = tmp_path / "bayou-data"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    store = BlobStore.in_data_dir(data_dir)
    stored = store.put_bytes(b"a licence scan")
    blob = store.path(stored.sha256)
    assert mode(data_dir) == 0o700
    assert [mode(path) for path in (store.root, blob.parent, store.root / ".tmp", store.root / ".locks")] == [
        0o700
    ] * 4
    assert mode(blob) == 0o600


def test_installation_secrets_create_the_data_dir_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh"
    installation_secret(data_dir, "review-secret")
    assert mode(data_dir) == 0o700
    assert mode(data_dir / "review-secret") == 0o600
