"""A rich progress bar on stderr: files handled out of files found so far (the total grows in watch
mode), and the counts by outcome."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bayou.ingest.tally import Tally


class ProgressBar:
    def __init__(self, console: Console | None = None) -> None:
        self._progress = Progress(
            TextColumn("[bold]ingest[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console or Console(stderr=True),
        )
        self._task = self._progress.add_task("", total=None)

    def __enter__(self) -> ProgressBar:
        self._progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._progress.stop()

    def show(self, tally: Tally, pending: int) -> None:
        """`pending`: files found but not handled yet (still settling, or next in line)."""
        self._progress.update(
            self._task,
            completed=tally.handled,
            total=tally.handled + pending,
            description=f"queued {tally.queued} duplicate {tally.duplicate} refused {tally.refused_total}",
        )
