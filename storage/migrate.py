"""Schema migrations (Alembic, configured in code: no alembic.ini).

`ensure_schema` is what every command that opens the database calls first: the embedded SQLite database
is brought to head on the spot; a PostgreSQL database behind head is refused, because migrating a shared
server is an operator's decision (`bayou db upgrade`), never a side effect of a worker starting.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

from storage.db import is_postgresql, is_sqlite, make_engine, sqlite_path
from storage.errors import SchemaBehind, SchemaUnknown

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
UPGRADE_COMMAND = "bayou db upgrade"
# any constant works; it only has to be the same for every bayou process on the server
_PG_MIGRATION_LOCK = 0x6261796F75


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def known_revisions() -> set[str]:
    return {script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def current_revision(target: str | Engine) -> str | None:
    """The database's revision; None for a database that was never migrated."""
    with _engine(target) as engine, engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(target: str | Engine, revision: str = "head") -> str | None:
    """Migrates to `revision` and returns the revision the database is at afterwards. Concurrent callers
    (several processes starting at once) take turns instead of racing to create the same tables."""
    with _engine(target) as engine, _sqlite_file_lock(engine), engine.begin() as connection:
        if is_postgresql(engine.url):
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        return MigrationContext.configure(connection).get_current_revision()


def ensure_schema(target: str | Engine, *, auto: bool) -> str:
    """Returns the head revision once the database is at it. With `auto`, an SQLite database behind head
    is upgraded; PostgreSQL never is (`SchemaBehind`, naming `bayou db upgrade`)."""
    with _engine(target) as engine:
        head = head_revision()
        current = current_revision(engine)
        if current == head:
            return head
        where = engine.url.render_as_string(hide_password=True)
        if current is not None and current not in known_revisions():
            raise SchemaUnknown(
                f"the database {where} is at revision {current}, which this version of bayou does not know "
                "(is it newer than this installation?)"
            )
        if auto and is_sqlite(engine.url):
            upgrade(engine)
            return head
        raise SchemaBehind(
            f"the database {where} is at revision {current or 'none (empty)'} but this version of bayou "
            f"needs {head}: run `{UPGRADE_COMMAND}`"
        )


@contextmanager
def _engine(target: str | Engine) -> Iterator[Engine]:
    if isinstance(target, Engine):
        yield target
        return
    engine = make_engine(target)
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def _sqlite_file_lock(engine: Engine) -> Iterator[None]:
    # SQLite starts its write transaction only at the first DDL, after Alembic has read the (still
    # empty) version table, so two processes would both try to create every table: serialise them
    path = sqlite_path(engine.url) if is_sqlite(engine.url) else None
    if path is None:
        yield
        return
    with path.with_name(path.name + ".migrate-lock").open("a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        yield
