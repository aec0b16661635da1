"""`bayou serve`: the REST API under uvicorn; with the embedded defaults (no broker configured) also one
in-process worker, so that a single command is a working installation."""

from __future__ import annotations

import importlib
import logging

import typer

log = logging.getLogger("bayou.serve")

EMBEDDED_WORKER_MODULE = "workers.embedded"


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port to listen on."),
) -> None:
    """Run the API (and, with the embedded broker, one worker)."""
    from bayou.logs import configure_logging
    from bayou.settings import get_settings

    settings = get_settings()
    # first, so that what importing the app logs is in the chosen format too
    configure_logging(settings.log_format, settings.log_level)

    import uvicorn

    from api.app import create_app
    from extractor.errors import ConfigurationError

    try:
        application = create_app(settings)
    except ConfigurationError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from exc
    worker = _start_embedded_worker() if not settings.broker_url else None
    try:
        # log_config=None: uvicorn's lines go through the root logger set up above (same format, same
        # request id) instead of uvicorn's own handlers
        uvicorn.run(application, host=host, port=port, log_level=settings.log_level.lower(), log_config=None)
    finally:
        stop = getattr(worker, "stop", None)
        if callable(stop):
            stop()


def _start_embedded_worker() -> object | None:
    """`workers.embedded.start_worker_thread()`, if that module exists; it returns a handle with `stop()`."""
    try:
        module = importlib.import_module(EMBEDDED_WORKER_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != EMBEDDED_WORKER_MODULE:
            raise
        log.warning("no embedded worker (%s not installed): documents stay queued", EMBEDDED_WORKER_MODULE)
        return None
    start = getattr(module, "start_worker_thread", None)
    if not callable(start):
        log.warning("%s has no start_worker_thread(): no embedded worker", EMBEDDED_WORKER_MODULE)
        return None
    return start()
