"""Per-process state of a worker: the database session factory, the blob store and the settings.

Created on first use and again after a fork (`worker_process_init`): a pooled database connection
inherited from the parent process must never be shared with the child.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from bayou.settings import Settings, get_settings
from storage.blobs import BlobStore
from storage.db import is_sqlite, make_engine, make_session_factory
from storage.migrate import ensure_schema

log = logging.getLogger(__name__)

_lock = threading.Lock()
_current: Runtime | None = None


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    db: Engine
    sessions: sessionmaker[Session]
    blobs: BlobStore


def get_runtime() -> Runtime:
    global _current
    with _lock:
        if _current is None:
            _current = _create(get_settings())
        return _current


def reset_runtime() -> None:
    """Forget the current state (after a fork, or when tests change the settings)."""
    global _current
    with _lock:
        if _current is not None:
            # close=False: the connections belong to the parent process, which may still use them
            _current.db.dispose(close=False)
        _current = None


def check_schema(settings: Settings) -> None:
    """The embedded SQLite database is brought to head; PostgreSQL behind head raises SchemaBehind."""
    ensure_schema(settings.database_url, auto=is_sqlite(settings.database_url))


def _create(settings: Settings) -> Runtime:
    db = make_engine(settings.database_url)
    return Runtime(
        settings=settings,
        db=db,
        sessions=make_session_factory(db),
        blobs=BlobStore.in_data_dir(settings.data_dir),
    )


def preload_models(models: list[str]) -> None:
    """Loads these models now, so the first document does not wait for them."""
    from bayou.engines import get_engine

    for model in models:
        log.info("loading %s", model)
        get_engine(model)
