"""`bayou ingest` as a command: summary on stdout, progress on stderr, exit codes, Ctrl-C."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from bayou.cli.ingest import register

DEADLINE_S = 15.0

# the command alone, as `bayou ingest` (the `bayou` entry point lists its modules elsewhere)
STANDALONE = """
import typer
from bayou.cli.ingest import register
app = typer.Typer()
app.callback()(lambda: None)
register(app)
app()
"""


@pytest.fixture
def cli(ingest_env: Callable[..., Path]) -> Callable[..., object]:
    ingest_env()
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    return lambda *args: CliRunner().invoke(app, ["ingest", *map(str, args)])


def test_ok_prints_the_summary_on_stdout_and_exits_0(
    cli: Callable[..., object], png_files: Callable[..., list[Path]], tmp_path: Path
) -> None:
    png_files(tmp_path / "inbox", 3)
    result = cli(tmp_path / "inbox", "--type", "receipt", "--settle", "0")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == "queued 3, duplicate 0, refused 0"
    assert "ingest" in result.stderr  # the progress bar
    again = cli(tmp_path / "inbox", "--type", "receipt", "--settle", "0")
    assert again.exit_code == 0
    assert again.stdout.strip().splitlines()[-1] == "queued 0, duplicate 3, refused 0"


def test_refused_files_exit_1_with_their_codes(
    cli: Callable[..., object], png_files: Callable[..., list[Path]], tmp_path: Path
) -> None:
    folder = tmp_path / "inbox"
    png_files(folder, 1)
    (folder / "empty.jpg").write_bytes(b"")
    result = cli(folder, "--type", "check", "--settle", "0")
    assert result.exit_code == 1, result.output
    assert result.stdout.strip().splitlines()[-1] == "queued 1, duplicate 0, refused 1 (empty_file 1)"


@pytest.mark.parametrize(
    "args",
    [
        ["missing", "--type", "receipt"],
        ["inbox", "--type", "invoice"],
        ["inbox", "--type", "receipt", "--model", "gpt-9"],
        ["inbox", "--type", "receipt", "--poll", "1"],
        ["inbox", "--type", "receipt", "--watch", "--poll", "0"],
        ["inbox", "--type", "receipt", "--settle", "-1"],
    ],
    ids=[
        "folder-missing",
        "unknown-type",
        "unknown-model",
        "poll-without-watch",
        "poll-zero",
        "settle-negative",
    ],
)
def test_usage_and_configuration_errors_exit_2_and_store_nothing(
    cli: Callable[..., object], tmp_path: Path, args: list[str], ingest_env: Callable[..., Path]
) -> None:
    data_dir = ingest_env()
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "x.png").write_bytes(b"not checked")
    result = cli(*[str(tmp_path / a) if a in ("missing", "inbox") else a for a in args])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ")
    assert not (data_dir / "blobs").exists() or not list((data_dir / "blobs").glob("??/*"))


def _document_count(database: Path) -> int:
    try:
        with sqlite3.connect(database) as connection:
            return connection.execute("SELECT count(*) FROM documents").fetchone()[0]
    except sqlite3.Error:
        return 0  # not created or not migrated yet


def _wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"not within {DEADLINE_S} s"
        time.sleep(0.05)


def _start(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", STANDALONE, "ingest", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_ctrl_c_ends_a_watch_cleanly_with_its_summary(
    ingest_env: Callable[..., Path], png_files: Callable[..., list[Path]], tmp_path: Path
) -> None:
    data_dir = ingest_env()  # the environment the child inherits
    png_files(tmp_path / "inbox", 2)
    process = _start([str(tmp_path / "inbox"), "--type", "receipt", "--settle", "0", "--watch"])
    try:
        _wait_until(lambda: _document_count(data_dir / "bayou.db") == 2)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=DEADLINE_S)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert stdout.strip().splitlines()[-1] == "queued 2, duplicate 0, refused 0"


def test_ctrl_c_stops_a_one_shot_run_that_waits_for_files_to_settle_with_130(
    ingest_env: Callable[..., Path], png_files: Callable[..., list[Path]], tmp_path: Path
) -> None:
    data_dir = ingest_env()
    png_files(tmp_path / "inbox", 1)  # written just now: it settles only after 60 s
    process = _start([str(tmp_path / "inbox"), "--type", "receipt", "--settle", "60"])
    try:
        # the schema exists once the run has opened the database; it then waits for the file
        _wait_until(lambda: (data_dir / "bayou.db").exists())
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=DEADLINE_S)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert stdout.strip().splitlines()[-1] == "queued 0, duplicate 0, refused 0"
    assert _document_count(data_dir / "bayou.db") == 0
