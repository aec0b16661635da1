"""Migrations: empty databases to head on both backends, models == migrations, ensure_schema's policy."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from storage import migrate
from storage.db import make_engine
from storage.errors import SchemaBehind, SchemaUnknown
from storage.models import Base

TABLES = {
    "documents",
    "pages",
    "extraction_runs",
    "reviews",
    "scores",
    "audit_log",
    "api_keys",
    "users",
    "batches",
    "review_sessions",
    "sign_in_failures",
}


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _schema_diff(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()


def test_upgrade_creates_every_table_in_an_empty_sqlite_file(sqlite_url: str) -> None:
    assert not Path(sqlite_url.removeprefix("sqlite:///")).exists()

    assert migrate.upgrade(sqlite_url) == migrate.head_revision()

    assert migrate.current_revision(sqlite_url) == migrate.head_revision()
    assert _tables(sqlite_url) == TABLES | {"alembic_version"}


def test_sqlite_connections_have_wal_and_foreign_keys(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with engine.connect() as connection:
        assert connection.scalar(text("PRAGMA journal_mode")) == "wal"
        assert connection.scalar(text("PRAGMA foreign_keys")) == 1
        assert connection.scalar(text("PRAGMA busy_timeout")) > 0
    engine.dispose()


@pytest.mark.postgres
def test_upgrade_creates_every_table_in_an_empty_postgres_database(
    postgres_database_factory: Callable[[], str],
) -> None:
    url = postgres_database_factory()
    assert migrate.current_revision(url) is None

    assert migrate.upgrade(url) == migrate.head_revision()

    assert _tables(url) == TABLES | {"alembic_version"}


def test_models_match_the_migrations_on_sqlite(sqlite_url: str) -> None:
    migrate.upgrade(sqlite_url)
    assert _schema_diff(sqlite_url) == []


@pytest.mark.postgres
def test_models_match_the_migrations_on_postgres(postgres_url: str) -> None:
    assert _schema_diff(postgres_url) == []


def test_a_diff_would_be_seen(sqlite_url: str) -> None:
    # guards the guard: dropping an index the models declare must show up
    migrate.upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    with engine.begin() as connection:
        connection.execute(text("DROP INDEX ix_pages_blob_sha256"))
    engine.dispose()
    assert _schema_diff(sqlite_url) != []


def test_downgrade_to_base_and_back(sqlite_url: str) -> None:
    migrate.upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    with engine.begin() as connection:
        config = migrate.alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    engine.dispose()
    assert _tables(sqlite_url) == {"alembic_version"}

    assert migrate.upgrade(sqlite_url) == migrate.head_revision()


def test_concurrent_upgrades_of_one_sqlite_file_take_turns(sqlite_url: str) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def run() -> None:
        try:
            barrier.wait()
            migrate.upgrade(sqlite_url)
        except BaseException as exc:  # collected and asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert migrate.current_revision(sqlite_url) == migrate.head_revision()


def test_ensure_schema_upgrades_embedded_sqlite_when_auto(sqlite_url: str) -> None:
    assert migrate.ensure_schema(sqlite_url, auto=True) == migrate.head_revision()
    assert migrate.current_revision(sqlite_url) == migrate.head_revision()


def test_ensure_schema_without_auto_refuses_sqlite_behind_head(sqlite_url: str) -> None:
    with pytest.raises(SchemaBehind, match="bayou db upgrade"):
        migrate.ensure_schema(sqlite_url, auto=False)
    assert migrate.current_revision(sqlite_url) is None


@pytest.mark.postgres
def test_ensure_schema_refuses_postgres_behind_head_even_with_auto(
    postgres_database_factory: Callable[[], str],
) -> None:
    url = postgres_database_factory()

    with pytest.raises(SchemaBehind, match="run `bayou db upgrade`") as refused:
        migrate.ensure_schema(url, auto=True)

    assert refused.value.code == "schema_behind"
    assert migrate.current_revision(url) is None, "a PostgreSQL database must never be migrated implicitly"
    assert "alembic_version" not in _tables(url)


@pytest.mark.postgres
def test_ensure_schema_accepts_postgres_at_head(postgres_url: str) -> None:
    assert migrate.ensure_schema(postgres_url, auto=False) == migrate.head_revision()


def test_ensure_schema_names_a_revision_it_does_not_know(sqlite_url: str) -> None:
    migrate.upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'ffff_from_the_future'"))
    engine.dispose()

    with pytest.raises(SchemaUnknown, match="ffff_from_the_future"):
        migrate.ensure_schema(sqlite_url, auto=True)


def test_a_batch_running_before_0005_starts_its_walk_from_checkpoint_zero(sqlite_url: str) -> None:
    migrate.upgrade(sqlite_url, "0004")
    engine = make_engine(sqlite_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO batches (id, folder, doc_type, recursive, created_at, status, total_files)"
                " VALUES ('bat_old', 'scans', 'receipt', 1, CURRENT_TIMESTAMP, 'running', 7)"
            )
        )
    migrate.upgrade(sqlite_url)
    with engine.connect() as connection:
        row = connection.execute(text("SELECT checkpoint, cursor FROM batches WHERE id = 'bat_old'")).one()
    engine.dispose()

    # the batch id alone (checkpoint 0) is the message such a batch's walk waits for, or the sweep sends
    assert tuple(row) == (0, None)
