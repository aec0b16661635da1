"""`bayou serve`: uvicorn on create_app(), plus the embedded worker when no broker is configured."""

from __future__ import annotations

import logging

import pytest
import typer
from typer.testing import CliRunner

from bayou.cli import serve as serve_cli

CHECK_ADDRESS = serve_cli.check_address


@pytest.fixture
def serve(api_data_dir, monkeypatch):
    from bayou.settings import get_settings

    monkeypatch.setenv("BAYOU_DATA_DIR", str(api_data_dir))
    monkeypatch.setenv("BAYOU_DATABASE_URL", f"sqlite:///{api_data_dir / 'bayou.db'}")
    ran: list[tuple] = []
    monkeypatch.setattr("uvicorn.run", lambda app, **kwargs: ran.append((app, kwargs)))
    # uvicorn does not run here, so its port need not be free (another serve on this machine may hold it)
    monkeypatch.setattr(serve_cli, "check_address", lambda host, port: None)
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

    class RecordingWorker:  # stands in for the embedded worker's handle; the real one is tested elsewhere
        stopped = False

        def stop(self):
            RecordingWorker.stopped = True

    monkeypatch.setattr(
        "workers.embedded.start_worker_thread", lambda: started.append(True) or RecordingWorker()
    )
    result, ran = serve("--host", "0.0.0.0", "--port", "8123")
    assert result.exit_code == 0, result.output
    ((app, kwargs),) = ran
    assert kwargs == {
        "host": "0.0.0.0",
        "port": 8123,
        "log_level": "info",
        "log_config": None,
        "proxy_headers": True,
        "forwarded_allow_ips": "127.0.0.1",
    }
    assert "/v1/documents" in app.openapi()["paths"]
    assert len(started) == 1 and RecordingWorker.stopped


def test_serve_with_a_broker_configured_starts_no_worker(serve, monkeypatch):
    monkeypatch.setenv("BAYOU_BROKER_URL", "redis://127.0.0.1:6379/0")
    started = []
    monkeypatch.setattr("workers.embedded.start_worker_thread", lambda: started.append(True))
    result, ran = serve()
    assert result.exit_code == 0, result.output
    assert len(ran) == 1 and started == []


def test_serve_on_an_address_in_use_is_one_line_and_exit_2_before_any_worker_starts(serve, monkeypatch):
    import socket

    started = []
    monkeypatch.setattr("workers.embedded.start_worker_thread", lambda: started.append(True))
    monkeypatch.setattr(serve_cli, "check_address", CHECK_ADDRESS)  # the real one, this time
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result, ran = serve("--port", str(taken.getsockname()[1]))
    assert result.exit_code == 2, result.output
    assert "cannot listen on 127.0.0.1:" in result.output
    assert ran == [] and started == []


def _login_cookie_through_uvicorn(app, kwargs: dict, *, client: str) -> str:
    """The review cookie set on a request that came from `client` with `X-Forwarded-Proto: https`, through
    the app as uvicorn wraps it with exactly the options `bayou serve` gave (proxy headers included)."""
    import uvicorn
    from fastapi.testclient import TestClient

    config = uvicorn.Config(app, **kwargs)
    config.load()
    browser = TestClient(config.loaded_app, client=(client, 40000))
    answer = browser.get(
        "/review/login", headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"}
    )
    assert answer.status_code == 200
    return answer.headers["set-cookie"].lower()


@pytest.mark.parametrize(
    ("trusted", "option", "secure"),
    [
        ("", [], True),  # the default: a proxy on the same host
        ("10.1.2.3", [], False),  # a proxy elsewhere: a request from 127.0.0.1 is no proxy's
        ("10.1.2.3", ["--forwarded-allow-ips", "127.0.0.1,10.1.2.3"], True),
        ("*", [], True),
    ],
)
def test_behind_a_trusted_tls_proxy_the_review_cookie_is_secure(serve, monkeypatch, trusted, option, secure):
    monkeypatch.setenv("BAYOU_BROKER_URL", "redis://127.0.0.1:6379/0")  # no embedded worker
    if trusted:
        monkeypatch.setenv("BAYOU_FORWARDED_ALLOW_IPS", trusted)
    result, ran = serve(*option)
    assert result.exit_code == 0, result.output
    ((app, kwargs),) = ran
    cookie = _login_cookie_through_uvicorn(app, kwargs, client="127.0.0.1")
    assert ("; secure" in cookie) is secure
