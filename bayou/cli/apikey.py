"""`bayou apikey create|list|revoke`: API keys for the REST API. `create` prints the key alone on
stdout (it is stored hashed and shown only this once), so a script can capture it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

EXIT_FAILED = 1
EXIT_CONFIGURATION = 2


def register(app: typer.Typer) -> None:
    keys_app = typer.Typer(help="API keys for the REST API.", no_args_is_help=True)
    keys_app.command("create")(create)
    keys_app.command("list")(list_)
    keys_app.command("revoke")(revoke)
    app.add_typer(keys_app, name="apikey")


def create(name: str = typer.Option(..., "--name", help="Who or what the key is for; unique.")) -> None:
    """Create a key and print it (only the key, on stdout); it cannot be shown again."""
    from api.keys import KeyNameTaken, create_key

    with _session() as session:
        try:
            key = create_key(session, name)
        except (KeyNameTaken, ValueError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(EXIT_CONFIGURATION) from exc
    typer.echo(key)
    typer.echo(f"created API key {name!r}; store it now, it is not shown again", err=True)


def list_() -> None:
    """One JSON object per key: name, prefix, created, last used, revoked (never the key)."""
    from api.keys import describe, list_keys

    with _session() as session:
        for row in list_keys(session):
            typer.echo(json.dumps(describe(row)))


def revoke(name: str = typer.Argument(..., help="The key's name.")) -> None:
    """Revoke a key: requests with it are refused (401) from now on."""
    from api.keys import revoke_key
    from storage.errors import NotFound

    with _session() as session:
        try:
            revoke_key(session, name)
        except NotFound as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(EXIT_FAILED) from exc
    typer.echo(f"revoked API key {name!r}", err=True)


@contextmanager
def _session() -> Iterator[Session]:
    from bayou.settings import get_settings
    from extractor.errors import ConfigurationError
    from storage.db import make_engine, make_session_factory
    from storage.migrate import ensure_schema

    engine = make_engine(get_settings().database_url)
    try:
        try:
            ensure_schema(engine, auto=True)
        except ConfigurationError as exc:
            typer.echo(f"error: {exc.message}", err=True)
            raise typer.Exit(EXIT_CONFIGURATION) from exc
        with make_session_factory(engine)() as session:
            yield session
    finally:
        engine.dispose()
