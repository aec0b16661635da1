"""`bayou serve`: uvicorn on create_app(), plus the embedded worker when no broker is configured."""

from __future__ import annotations

import logging
import sys
import types

import pytest
import typer
from typer.testing import CliRunner

from bayou.cli import serve as serve_cli


@pytest.fixture
def serve(api_data_dir, monkeypatch):
    from bayou.settings import get_settings

    monkeypatch.setenv("BAYOU_DATA_DIR", str(api_data_dir))
    monkeypatch.setenv("BAYOU_DATABASE_URL", f"sqlite:///{api_data_dir / 'bayou.db'}")
    ran: list[tuple] = []
    monkeypatch.setattr("uvicorn.run", lambda app, **kwargs: ran.append((app, kwargs)))
    get_settings.cache_clear()
    root = logging.getLogger()
    saved_logging = list(root.handlers), root.level  # serve sets up the root logger
    app = typer.Typer()
    serve_cli.register(app)
    app.command("noop", hidden=True)(lambda: None)  # a second command keeps `serve` a subcommand
    yield lambda *args: (CliRunner().invoke(app, ["serve", *args]), ran)
    get_settings.cache_clear()
    handlers, level = saved_logging
    root.handlers[:] = handlers
    root.setLevel(level)


def test_serve_runs_uvicorn_on_the_app_and_starts_the_embedded_worker(serve, monkeypatch):
    started = []

    class Handle:
        stopped = False

        def stop(self):
            Handle.stopped = True

    fake = types.ModuleType("fake_embedded_for_tests")
    fake.start_worker_thread = lambda: started.append(True) or Handle()
    monkeypatch.setitem(sys.modules, "fake_embedded_for_tests", fake)
    monkeypatch.setattr(serve_cli, "EMBEDDED_WORKER_MODULE", "fake_embedded_for_tests")
    result, ran = serve("--host", "0.0.0.0", "--port", "8123")
    assert result.exit_code == 0, result.output
    ((app, kwargs),) = ran
    assert kwargs["host"] == "0.0.0.0" and kwargs["port"] == 8123
    assert "/v1/documents" in app.openapi()["paths"]
    assert len(started) == 1 and Handle.stopped


def test_serve_without_an_embedded_worker_module_still_serves(serve, monkeypatch, caplog):
    monkeypatch.setattr(serve_cli, "EMBEDDED_WORKER_MODULE", "workers_no_such_module_for_tests")
    with caplog.at_level("WARNING", logger="bayou.serve"):
        result, ran = serve()
    assert result.exit_code == 0, result.output
    expected = {"host": "127.0.0.1", "port": 8000, "log_level": "info", "log_config": None}
    assert len(ran) == 1 and ran[0][1] == expected
    assert "no embedded worker" in caplog.text


def test_serve_with_a_broker_configured_starts_no_worker(serve, monkeypatch):
    monkeypatch.setenv("BAYOU_BROKER_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setattr(serve_cli, "EMBEDDED_WORKER_MODULE", "must_not_be_imported")
    result, ran = serve()
    assert result.exit_code == 0, result.output and len(ran) == 1
