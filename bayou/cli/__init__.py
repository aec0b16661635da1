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
_COMMAND_MODULES = ["extract", "models", "samples", "evaluate", "db", "apikey", "serve", "worker", "ingest", "user"]


def _assemble() -> None:
    for name in _COMMAND_MODULES:
        importlib.import_module(f"bayou.cli.{name}").register(app)


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    _assemble()
    app()
