"""`bayou db upgrade` / `bayou db current` against the configured database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import typer
from typer.testing import CliRunner

from bayou.cli import db as db_cli
from bayou.settings import get_settings
from storage.migrate import head_revision


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, sqlite_url: str) -> Iterator[typer.Typer]:
    monkeypatch.setenv("BAYOU_DATABASE_URL", sqlite_url)
    get_settings.cache_clear()
    app = typer.Typer()
    # a second command keeps typer from collapsing the app into its only sub-command
    app.command("noop")(lambda: None)
    db_cli.register(app)
    yield app
    get_settings.cache_clear()


def test_db_current_then_upgrade_then_current(cli: typer.Typer) -> None:
    runner = CliRunner()

    before = runner.invoke(cli, ["db", "current"])
    assert before.exit_code == 0, before.output
    assert before.stdout.strip() == "none"
    assert "bayou db upgrade" in before.stderr

    upgraded = runner.invoke(cli, ["db", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    assert upgraded.stdout.strip() == head_revision()

    after = runner.invoke(cli, ["db", "current"])
    assert after.stdout.strip() == head_revision()
    assert after.stderr == ""


def test_db_upgrade_of_an_unreachable_database_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    # port 1 on localhost: refused at once, no waiting for a timeout
    monkeypatch.setenv("BAYOU_DATABASE_URL", "postgresql+psycopg://nobody:secret@127.0.0.1:1/none")
    get_settings.cache_clear()
    app = typer.Typer()
    app.command("noop")(lambda: None)
    db_cli.register(app)
    try:
        result = CliRunner().invoke(app, ["db", "upgrade"])
    finally:
        get_settings.cache_clear()

    assert result.exit_code == 2
    assert "error: database" in result.stderr
    assert "secret" not in result.output


def test_settings_that_do_not_validate_are_a_configuration_error_with_exit_2(tmp_path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "BAYOU_DATA_DIR": str(tmp_path), "BAYOU_STUCK_AFTER_S": "5"}
    env.pop("BAYOU_DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "bayou.cli", "db", "upgrade"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "error: invalid settings: stuck_after_s (5) must be longer" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not (tmp_path / "bayou.db").exists()  # nothing was done with settings that are wrong
