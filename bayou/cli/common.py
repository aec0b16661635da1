"""What the operator commands share: exit codes, the one-line error, and a database session at schema head."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NoReturn

import typer

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

EXIT_FAILED = 1
EXIT_CONFIGURATION = 2


def fail(message: str, code: int = EXIT_CONFIGURATION) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def database_session() -> Iterator[Session]:
    """A session on BAYOU_DATABASE_URL; the embedded SQLite database is migrated first, a PostgreSQL one
    behind head is refused (exit 2), as every command that needs the database does."""
    from bayou.settings import get_settings
    from extractor.errors import ConfigurationError
    from storage.db import make_engine, make_session_factory
    from storage.migrate import ensure_schema

    engine = make_engine(get_settings().database_url)
    try:
        try:
            ensure_schema(engine, auto=True)
        except ConfigurationError as exc:
            fail(exc.message)
        with make_session_factory(engine)() as session:
            yield session
    finally:
        engine.dispose()
