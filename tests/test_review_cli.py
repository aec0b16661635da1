"""`bayou user create --email E --role R --password-stdin`."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from sqlalchemy import select
from typer.testing import CliRunner

from bayou.cli.user import register


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    from bayou.settings import get_settings

    monkeypatch.setenv("BAYOU_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("BAYOU_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    app = typer.Typer()
    register(app)
    yield app
    get_settings.cache_clear()


def users(tmp_path: Path):
    from storage.db import make_engine, make_session_factory
    from storage.models import User

    engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'bayou.db'}")
    with make_session_factory(engine)() as session:
        found = [(u.email, u.role, u.password_hash) for u in session.scalars(select(User))]
    engine.dispose()
    return found


def run(app, *args: str, password: str = "a long enough password\n"):
    return CliRunner().invoke(app, ["user", "create", *args], input=password)


def test_create_a_user(cli, tmp_path: Path) -> None:
    result = run(cli, "--email", "Rita@Example.com", "--role", "admin", "--password-stdin")
    assert result.exit_code == 0, result.output
    [(email, role, password_hash)] = users(tmp_path)
    assert (email, role) == ("rita@example.com", "admin")
    assert password_hash.startswith("$argon2id$")
    assert "a long enough password" not in password_hash
    from api.review.auth import authenticate
    from storage.db import make_engine, make_session_factory

    engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'bayou.db'}")
    with make_session_factory(engine)() as session:
        assert authenticate(session, "rita@example.com", "a long enough password") is not None
        assert authenticate(session, "rita@example.com", "a long enough password\n") is None
    engine.dispose()


@pytest.mark.parametrize(
    ("args", "password", "message"),
    [
        (["--email", "r@example.com", "--role", "reviewer"], "a long enough password\n", "--password-stdin"),
        (
            ["--email", "r@example.com", "--role", "boss", "--password-stdin"],
            "a long enough password\n",
            "role",
        ),
        (
            ["--email", "not-an-address", "--role", "reviewer", "--password-stdin"],
            "a long enough password\n",
            "email",
        ),
        (["--email", "r@example.com", "--role", "reviewer", "--password-stdin"], "short\n", "at least"),
    ],
)
def test_refusals(cli, tmp_path: Path, args: list[str], password: str, message: str) -> None:
    result = run(cli, *args, password=password)
    assert result.exit_code == 2
    assert message in result.output


def test_an_existing_email_is_refused(cli, tmp_path: Path) -> None:
    assert run(cli, "--email", "r@example.com", "--role", "reviewer", "--password-stdin").exit_code == 0
    again = run(cli, "--email", "R@example.com", "--role", "admin", "--password-stdin")
    assert again.exit_code == 2
    assert "exists" in again.output
    assert [(e, r) for e, r, _ in users(tmp_path)] == [("r@example.com", "reviewer")]


def test_list_disable_and_enable(cli, tmp_path: Path) -> None:
    for email, role in (("ada@example.com", "admin"), ("rita@example.com", "reviewer")):
        assert run(cli, "--email", email, "--role", role, "--password-stdin").exit_code == 0
    runner = CliRunner()
    listed = runner.invoke(cli, ["user", "list"])
    assert listed.exit_code == 0
    assert listed.stdout.splitlines() == [
        "ada@example.com\tadmin\tactive",
        "rita@example.com\treviewer\tactive",
    ]
    assert "$argon2" not in listed.output

    assert runner.invoke(cli, ["user", "disable", "RITA@example.com"]).exit_code == 0
    assert "rita@example.com\treviewer\tdisabled" in runner.invoke(cli, ["user", "list"]).stdout
    from api.review.auth import AccountDisabled, authenticate
    from storage.db import make_engine, make_session_factory
    from storage.models import AuditEntry

    engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'bayou.db'}")
    with make_session_factory(engine)() as session:
        with pytest.raises(AccountDisabled):
            authenticate(session, "rita@example.com", "a long enough password")
        [entry] = session.scalars(select(AuditEntry))
        assert (entry.actor, entry.action, entry.detail["user"]) == (
            "cli",
            "user.disable",
            "rita@example.com",
        )
    assert runner.invoke(cli, ["user", "enable", "rita@example.com"]).exit_code == 0
    with make_session_factory(engine)() as session:
        assert authenticate(session, "rita@example.com", "a long enough password") is not None
    engine.dispose()

    unknown = runner.invoke(cli, ["user", "disable", "nobody@example.com"])
    assert unknown.exit_code == 2
    assert "no user nobody@example.com" in unknown.output
