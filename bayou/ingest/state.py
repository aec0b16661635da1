"""What this process has already handled, so that a watch loop's rescan does not read unchanged files
again. Nothing is kept on disk: a re-run relies on the database, where the same content, type and model
is one document, so already-recorded content counts as a duplicate and is not enqueued again."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from bayou.ingest.scan import FileStat


class Handled:
    """Each handled path with the stat it had when it was read."""

    def __init__(self) -> None:
        self._stats: dict[Path, FileStat] = {}

    def add(self, path: Path, stat: FileStat) -> None:
        self._stats[path] = stat

    def is_unchanged(self, path: Path, stat: FileStat | None) -> bool:
        """True when `path` was handled and still looks the same (a changed file is new content)."""
        return stat is not None and self._stats.get(path) == stat

    def retain(self, present: Collection[Path]) -> None:
        """Forgets paths no longer there: an inbox emptied after ingest must not grow this forever."""
        for path in self._stats.keys() - set(present):
            del self._stats[path]
