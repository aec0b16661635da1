"""`bayou apikey create|list|revoke`: API keys for the REST API. `create` prints the key alone on
stdout (it is stored hashed and shown only this once), so a script can capture it."""

from __future__ import annotations

import json

import typer

from bayou.cli.common import EXIT_FAILED, database_session, fail


def register(app: typer.Typer) -> None:
    keys_app = typer.Typer(help="API keys for the REST API.", no_args_is_help=True)
    keys_app.command("create")(create)
    keys_app.command("list")(list_)
    keys_app.command("revoke")(revoke)
    app.add_typer(keys_app, name="apikey")


def create(name: str = typer.Option(..., "--name", help="Who or what the key is for; unique.")) -> None:
    """Create a key and print it (only the key, on stdout); it cannot be shown again."""
    from api.keys import KeyNameTaken, create_key

    with database_session() as session:
        try:
            key = create_key(session, name)
        except (KeyNameTaken, ValueError) as exc:
            fail(str(exc))
    typer.echo(key)
    typer.echo(f"created API key {name!r}; store it now, it is not shown again", err=True)


def list_() -> None:
    """One JSON object per key: name, prefix, created, last used, revoked (never the key)."""
    from api.keys import describe, list_keys

    with database_session() as session:
        for row in list_keys(session):
            typer.echo(json.dumps(describe(row)))


def revoke(name: str = typer.Argument(..., help="The key's name.")) -> None:
    """Revoke a key: requests with it are refused (401) from now on."""
    from api.keys import revoke_key
    from storage.errors import NotFound

    with database_session() as session:
        try:
            revoke_key(session, name)
        except NotFound as exc:
            fail(str(exc), EXIT_FAILED)
    typer.echo(f"revoked API key {name!r}", err=True)
