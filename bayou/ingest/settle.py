"""Settling: a file is taken only once its size and mtime have stayed still for `settle_s` seconds, so a
scanner or a network copy that is still writing it is not read half-way."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from bayou.ingest.scan import FileStat, stat_file

NS_PER_S = 1_000_000_000


@dataclass
class _Sighting:
    stat: FileStat
    since: float  # monotonic time at which `stat` was first seen


class SettleTracker:
    """Files seen but not taken yet, each with the stat it has had since when."""

    def __init__(
        self,
        settle_s: float,
        *,
        stat: Callable[[Path], FileStat | None] = stat_file,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settle_s = settle_s
        self._stat = stat
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        self._pending: dict[Path, _Sighting] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def watch(self, paths: Iterable[Path]) -> None:
        """Starts tracking `paths` (those already tracked keep their history)."""
        for path in paths:
            if path not in self._pending:
                current = self._stat(path)
                if current is not None:
                    self._pending[path] = _Sighting(current, self._monotonic())

    def take_settled(self) -> list[tuple[Path, FileStat]]:
        """The tracked files that have settled, with their stat; they are no longer tracked. Files that
        vanished are dropped; files that changed start their wait again."""
        settled = []
        for path, sighting in list(self._pending.items()):
            current = self._stat(path)
            if current is None:
                del self._pending[path]
            elif current != sighting.stat:
                self._pending[path] = _Sighting(current, self._monotonic())
            elif self._still_for(sighting) >= self.settle_s:
                del self._pending[path]
                settled.append((path, current))
        return settled

    def _still_for(self, sighting: _Sighting) -> float:
        # watched long enough ourselves, or last written long enough ago: a write always moves the
        # mtime to "now", so an old mtime spares a one-shot run the wait for files nobody is writing
        watched = self._monotonic() - sighting.since
        untouched = self._wall_clock() - sighting.stat.mtime_ns / NS_PER_S
        return max(watched, untouched)
