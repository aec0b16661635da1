"""`bayou user create --email E --role {reviewer,admin} --password-stdin`: an account for the review UI
(/review). The password is read from stdin only, never from the command line (shell history, `ps`).

`bayou user list`, `bayou user disable EMAIL`, `bayou user enable EMAIL`: the same as the admin page
(/review/admin/users) for an operator at the server, e.g. when no admin can sign in any more."""

from __future__ import annotations

import sys

import typer

from bayou.cli.common import database_session, fail


def register(app: typer.Typer) -> None:
    users_app = typer.Typer(help="Accounts for the review UI (/review).", no_args_is_help=True)
    users_app.command("create")(create)
    users_app.command("list")(list_users)
    users_app.command("disable")(disable)
    users_app.command("enable")(enable)
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
        fail("the password is read from stdin: pass --password-stdin")
    password = sys.stdin.readline().rstrip("\r\n")
    try:
        check_new_user(normalize_email(email), role, password)
    except ValueError as exc:
        fail(str(exc))
    with database_session() as session:
        try:
            user = create_user(session, email=email, role=role, password=password)
        except UserExists as exc:
            fail(str(exc))
        typer.echo(f"created {user.role} {user.email}", err=True)


def list_users() -> None:
    """Print every account, one a line: email, role, active or disabled (tab separated)."""
    from api.review.users import list_users as all_users

    with database_session() as session:
        for user in all_users(session):
            typer.echo(f"{user.email}\t{user.role}\t{'disabled' if user.disabled else 'active'}")


def disable(email: str = typer.Argument(..., help="The account's sign-in address.")) -> None:
    """Disable an account: it cannot sign in, and its open sessions stop working."""
    _set_disabled(email, disabled=True)


def enable(email: str = typer.Argument(..., help="The account's sign-in address.")) -> None:
    """Enable a disabled account again (and lift a sign-in lock)."""
    _set_disabled(email, disabled=False)


def _set_disabled(email: str, *, disabled: bool) -> None:
    from api.review.users import apply_disabled, find_user

    with database_session() as session:
        user = find_user(session, email)
        if user is None:
            fail(f"no user {email}")
        apply_disabled(session, user, disabled=disabled, actor="cli")
        typer.echo(f"{'disabled' if disabled else 'enabled'} {user.email}", err=True)
