"""`bayou ingest FOLDER --type T`: record and enqueue every supported file of a folder once."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer

if TYPE_CHECKING:
    from bayou.ingest.job import Report

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
# a one-shot run stopped by Ctrl-C before the end: the shell's convention for SIGINT
EXIT_INTERRUPTED = 130


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)


def ingest(
    folder: Path = typer.Argument(..., metavar="FOLDER", help="The folder to ingest."),
    doc_type: str = typer.Option(
        ..., "--type", help="Document type of every file: receipt, drivers_license, check."
    ),
    model: str | None = typer.Option(
        None, "--model", help="h2ovl-800m, h2ovl-2b, or a checkpoint directory (default: the type's)."
    ),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Also the folders below FOLDER."),
    keep_watching: bool = typer.Option(False, "--watch", help="Keep running; take new files as they settle."),
    poll: float | None = typer.Option(
        None,
        "--poll",
        metavar="SECONDS",
        help="With --watch: rescan every SECONDS instead of inotify (NFS/SMB shares).",
    ),
    settle: float = typer.Option(
        5.0,
        "--settle",
        metavar="SECONDS",
        help="Take a file only once its size and mtime stayed still this many SECONDS.",
    ),
) -> None:
    """Record every supported file of FOLDER (checked by content, like an upload) and enqueue it for the
    workers; no server needs to run. The same content is recorded once, whatever its name, so a re-run
    continues where the last one stopped. Hidden files, and symlinks that lead outside FOLDER, are skipped.

    A progress bar goes to stderr; the last line on stdout is the summary, e.g.
    `queued 12, duplicate 3, refused 2 (corrupt_file 1, empty_file 1)`.
    Ctrl-C stops after the file in hand. Exit codes: 0 ok, 1 some files refused, 2 usage or configuration
    error, 130 stopped by Ctrl-C before the end (not with --watch, where Ctrl-C is how it ends)."""
    from sqlalchemy.exc import SQLAlchemyError

    from bayou.ingest.job import UsageError, check_plan, resolve_target, run_ingest
    from bayou.ingest.progress import ProgressBar
    from bayou.ingest.run import Plan
    from bayou.ingest.stopping import stop_on_signals
    from bayou.settings import get_settings
    from extractor.errors import ConfigurationError

    settings = get_settings()
    if poll is not None and not keep_watching:
        _fail("--poll needs --watch")
    plan = Plan(folder=folder, recursive=recursive, settle_s=settle, poll_s=poll)
    stop = threading.Event()
    try:
        target = resolve_target(doc_type, model, settings)
        check_plan(plan)  # before the progress bar, so that the error is all stderr shows
        with stop_on_signals(stop), ProgressBar() as bar:
            report = run_ingest(plan, target, settings, keep_watching=keep_watching, display=bar, stop=stop)
    except (UsageError, ConfigurationError) as exc:
        _fail(str(exc))
    except SQLAlchemyError as exc:
        # the driver's own message names the problem (host, auth, database) without the URL
        _fail(f"database: {getattr(exc, 'orig', None) or exc}")
    except OSError as exc:
        # the files' own read errors are refusals (`unreadable`); this is the data directory's
        _fail(f"cannot store in {settings.data_dir}: {exc.strerror or exc}; files taken so far stay recorded")
    typer.echo(report.tally.summary())
    raise typer.Exit(_exit_code(report, keep_watching))


def _exit_code(report: Report, keep_watching: bool) -> int:
    if not report.completed and not keep_watching:
        return EXIT_INTERRUPTED
    return EXIT_REFUSED if report.tally.refused_total else EXIT_OK


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_USAGE)
