"""Alembic environment. Configuration is built in code (storage.migrate), which hands over either an open
connection (`config.attributes["connection"]`) or a URL (`config.attributes["url"]`)."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from storage.db import make_engine
from storage.models import Base

config = context.config


def run_with(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things: autogenerate later revisions as copy-and-move batches
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_with(connection)
        return
    engine = make_engine(config.attributes["url"])
    try:
        with engine.connect() as fresh:
            run_with(fresh)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("bayou migrations run online only: use `bayou db upgrade`")
run_online()
