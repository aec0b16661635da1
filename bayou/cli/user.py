"""`bayou user create --email E --role {reviewer,admin} --password-stdin`: an account for the review UI
(/review). The password is read from stdin only, never from the command line (shell history, `ps`)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

EXIT_CONFIGURATION = 2


def register(app: typer.Typer) -> None:
    users_app = typer.Typer(help="Accounts for the review UI (/review).", no_args_is_help=True)
    users_app.command("create")(create)
    app.add_typer(users_app, name="user")


def create(
    email: str = typer.Option(..., "--email", help="The sign-in address; stored lower-cased, unique."),
    role: str = typer.Option(..., "--role", help="reviewer or admin."),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from stdin (required: never on the command line)."
    ),
) -> None:
    """Create a review UI account."""
    from api.review.auth import UserExists, check_new_user, create_user, normalize_email

    if not password_stdin:
        _fail("the password is read from stdin: pass --password-stdin")
    password = sys.stdin.readline().rstrip("\r\n")
    try:
        check_new_user(normalize_email(email), role, password)
    except ValueError as exc:
        _fail(str(exc))
    with _session() as session:
        try:
            user = create_user(session, email=email, role=role, password=password)
        except UserExists as exc:
            _fail(str(exc))
        typer.echo(f"created {user.role} {user.email}", err=True)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_CONFIGURATION)


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
            _fail(exc.message)
        with make_session_factory(engine)() as session:
            yield session
    finally:
        engine.dispose()
