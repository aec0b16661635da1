"""`bayou db upgrade` and `bayou db current`: the database schema, by hand."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer

from bayou.settings import get_settings

EXIT_CONFIGURATION = 2


def register(app: typer.Typer) -> None:
    db_app = typer.Typer(help="The database schema (migrations).", no_args_is_help=True)
    db_app.command("upgrade")(upgrade)
    db_app.command("current")(current)
    app.add_typer(db_app, name="db")


def upgrade() -> None:
    """Migrate the database (BAYOU_DATABASE_URL) to the newest schema; prints the revision."""
    # imported here so that `bayou --help` does not pay for SQLAlchemy and Alembic
    from storage import migrate

    url = get_settings().database_url
    typer.echo(f"upgrading {_shown(url)}", err=True)
    with _refusals():
        revision = migrate.upgrade(url)
    typer.echo(revision)


def current() -> None:
    """Print the database's schema revision ("none" if never migrated); a note on stderr if behind."""
    from storage import migrate

    url = get_settings().database_url
    with _refusals():
        revision = migrate.current_revision(url)
        head = migrate.head_revision()
    typer.echo(revision or "none")
    if revision != head:
        typer.echo(f"head is {head}: run `bayou db upgrade`", err=True)


def _shown(url: str) -> str:
    from sqlalchemy import make_url

    return make_url(url).render_as_string(hide_password=True)


@contextmanager
def _refusals() -> Iterator[None]:
    """Configuration problems and an unreachable database end the command with exit code 2."""
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from extractor.errors import ConfigurationError

    try:
        yield
    except ConfigurationError as exc:
        _fail(exc.message)
        raise typer.Exit(EXIT_CONFIGURATION) from exc
    except CommandError as exc:
        # e.g. the database is at a revision this installation does not have
        _fail(f"migrations: {exc}")
        raise typer.Exit(EXIT_CONFIGURATION) from exc
    except SQLAlchemyError as exc:
        # the driver's own message says what is wrong (host, auth, database name) without the URL
        _fail(f"database: {getattr(exc, 'orig', None) or exc}")
        raise typer.Exit(EXIT_CONFIGURATION) from exc


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
