"""`bayou serve`: the REST API under uvicorn; with the embedded defaults (no broker configured) also one
in-process worker, so that a single command is a working installation."""

from __future__ import annotations

import logging
import socket

import typer

log = logging.getLogger("bayou.serve")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port to listen on."),
    forwarded_allow_ips: str | None = typer.Option(
        None,
        "--forwarded-allow-ips",
        help="Addresses of the TLS proxy in front (comma-separated, or '*') whose X-Forwarded-Proto and "
        "X-Forwarded-For are believed. Default: BAYOU_FORWARDED_ALLOW_IPS (127.0.0.1).",
    ),
) -> None:
    """Run the API (and, with the embedded broker, one worker)."""
    from bayou.logs import configure_logging
    from bayou.settings import get_settings

    settings = get_settings()
    # first, so that what importing the app logs is in the chosen format too
    configure_logging(settings.log_format, settings.log_level)

    import uvicorn

    from api.app import create_app
    from bayou.engines import check_engines
    from extractor.errors import ConfigurationError
    from extractor.registry import MODELS
    from workers.embedded import start_worker_thread

    try:
        if not settings.broker_url:  # the in-process worker serves every model: their engines must start
            check_engines(list(MODELS), settings)
        application = create_app(settings)
    except ConfigurationError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from exc
    try:
        check_address(host, port)
    except OSError as exc:
        typer.echo(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}", err=True)
        raise typer.Exit(2) from exc
    worker = start_worker_thread() if not settings.broker_url else None
    try:
        # log_config=None: uvicorn's lines go through the root logger set up above (same format, same
        # request id) instead of uvicorn's own handlers
        # proxy headers from the trusted addresses only: the scheme (https: Secure cookies) and the client's
        # address (sign-in throttling) come from the proxy; anyone else's X-Forwarded-* are ignored
        uvicorn.run(
            application,
            host=host,
            port=port,
            log_level=settings.log_level.lower(),
            log_config=None,
            proxy_headers=True,
            forwarded_allow_ips=forwarded_allow_ips or settings.forwarded_allow_ips,
        )
    finally:
        if worker is not None:
            worker.stop()


def check_address(host: str, port: int) -> None:
    """Raises OSError when `host:port` cannot be listened on (in use, not an address of this machine).

    Checked before the embedded worker starts: uvicorn finds out only after it, then exits 3 with the
    worker already taking tasks from the shared queue; a configuration error is exit 2 and one line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # as uvicorn binds it: a connection of an earlier run still in TIME_WAIT is no conflict
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
