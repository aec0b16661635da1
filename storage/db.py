"""Engines and session factories from a database URL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from storage.permissions import private_dir, private_sqlite_file

SQLITE_BUSY_TIMEOUT_MS = 10_000


def is_sqlite(url: str | URL) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def is_postgresql(url: str | URL) -> bool:
    return make_url(url).get_backend_name() == "postgresql"


def sqlite_path(url: str | URL) -> Path | None:
    """The file behind a SQLite URL, or None for an in-memory database."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    return Path(database)


def make_engine(url: str | URL, **kwargs: Any) -> Engine:
    # a failed statement's error names the statement, never its values: those are documents' fields and
    # file names (personal data, for a driver's licence), and such errors reach logs and error messages
    kwargs.setdefault("hide_parameters", True)
    if is_sqlite(url):
        return _make_sqlite_engine(url, **kwargs)
    # pre-ping: a pooled connection may have been cut by a PostgreSQL restart or an idle timeout
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    # objects stay readable after commit: the operations return rows that callers serialise afterwards
    return sessionmaker(engine, expire_on_commit=False)


def _make_sqlite_engine(url: str | URL, **kwargs: Any) -> Engine:
    path = sqlite_path(url)
    if path is not None:
        # the directory is only created private: one named in the URL may be shared on purpose
        if not path.parent.exists():
            private_dir(path.parent)
        private_sqlite_file(path)
    engine = create_engine(url, **kwargs)
    event.listen(engine, "connect", _configure_sqlite_connection)
    return engine


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    set_pragmas(
        dbapi_connection,
        # WAL: readers (API) do not block the writer (worker) and vice versa
        journal_mode="WAL",
        # SQLite ignores foreign keys (and ON DELETE CASCADE) unless asked, per connection
        foreign_keys="ON",
        busy_timeout=SQLITE_BUSY_TIMEOUT_MS,
    )


def set_pragmas(dbapi_connection: Any, **pragmas: str | int) -> None:
    """Sets SQLite PRAGMAs on a new DB-API connection (they hold per connection, not per file)."""
    cursor = dbapi_connection.cursor()
    try:
        for name, value in pragmas.items():
            cursor.execute(f"PRAGMA {name}={value}")
    finally:
        cursor.close()
