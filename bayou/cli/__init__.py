"""The `bayou` command. Each sub-module registers its own commands; this one only assembles them."""

from __future__ import annotations

import importlib
import logging
import sys

import typer

app = typer.Typer(
    help="bayou: extract validated JSON from receipts, US driver's licences and US checks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# modules that define `register(app)`; kept as names so `bayou --help` stays fast (no torch import)
_COMMAND_MODULES = [
    "extract",
    "models",
    "samples",
    "evaluate",
    "db",
    "apikey",
    "serve",
    "worker",
    "ingest",
    "user",
]


def _assemble() -> None:
    for name in _COMMAND_MODULES:
        importlib.import_module(f"bayou.cli.{name}").register(app)


def main() -> None:
    from pydantic import ValidationError

    _configure_logging()
    _assemble()
    try:
        app()
    except ValidationError as exc:  # settings from the environment or .env that do not validate
        problems = "; ".join(_problem(error) for error in exc.errors())
        typer.echo(f"error: invalid settings: {problems}", err=True)
        sys.exit(2)


def _configure_logging() -> None:
    """Every command logs to stderr in BAYOU_LOG_FORMAT (stdout is for results)."""
    from pydantic import ValidationError

    from bayou.logs import configure_logging
    from bayou.settings import get_settings

    try:
        settings = get_settings()
    except ValidationError:
        # the command that needs the settings reports what is wrong with them; logging still works
        configure_logging("text", logging.INFO)
        return
    configure_logging(settings.log_format, settings.log_level)


def _problem(error: dict) -> str:
    where = ".".join(map(str, error["loc"]))
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message
