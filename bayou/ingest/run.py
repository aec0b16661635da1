"""The two ways to run: once over what the folder holds now, or watching it for new files."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bayou.ingest.record import Recorder
from bayou.ingest.scan import list_candidates, stat_file
from bayou.ingest.settle import SettleTracker
from bayou.ingest.state import Handled
from bayou.ingest.tally import Tally
from bayou.intake.folders import Candidate

# pending files are looked at again this often: a fraction of the settle time, within these bounds
MIN_TICK_S = 0.05
MAX_TICK_S = 1.0


class Display(Protocol):
    def show(self, tally: Tally, pending: int) -> None: ...


@dataclass(frozen=True)
class Plan:
    folder: Path
    recursive: bool
    settle_s: float
    poll_s: float | None = None  # watch mode: poll every poll_s seconds instead of inotify

    @property
    def tick_s(self) -> float:
        tick = min(MAX_TICK_S, max(MIN_TICK_S, self.settle_s / 5))
        return min(tick, self.poll_s) if self.poll_s else tick


class _Taker:
    """Takes settled files from the tracker and records them, until asked to stop."""

    def __init__(self, recorder: Recorder, display: Display, stop: threading.Event) -> None:
        self.handled = Handled()
        self._recorder = recorder
        self._display = display
        self._stop = stop
        # each path as the latest listing checked it: what settles is taken as that file only
        self._listed: dict[Path, Candidate] = {}

    def listed(self, candidates: list[Candidate]) -> list[Path]:
        """Notes a full listing's candidates (forgetting those of the one before); their paths, for the
        tracker."""
        self._listed = {candidate.path: candidate for candidate in candidates}
        return list(self._listed)

    def drain(self, tracker: SettleTracker) -> bool:
        """Records every file that has settled; False when stopped before the last of them."""
        settled = tracker.take_settled()
        for done, (path, stat) in enumerate(settled, start=1):
            if self._stop.is_set():
                return False
            candidate = self._listed.get(path)
            if candidate is None:  # no longer a candidate at the last listing (now a link outside, say)
                continue
            self._recorder.record(candidate)
            self.handled.add(path, stat)
            self._display.show(self._recorder.tally, len(tracker) + len(settled) - done)
        self._display.show(self._recorder.tally, len(tracker))
        return True


def ingest_once(plan: Plan, recorder: Recorder, display: Display, stop: threading.Event) -> bool:
    """Every candidate present now, each taken once it has settled. False when stopped before the end
    (what was recorded stays recorded; a re-run continues)."""
    tracker = SettleTracker(plan.settle_s)
    taker = _Taker(recorder, display, stop)
    tracker.watch(taker.listed(list_candidates(plan.folder, recursive=plan.recursive)))
    while True:
        if not taker.drain(tracker):
            return False
        if not tracker:
            return True
        if stop.wait(plan.tick_s):
            return False


def watch(plan: Plan, recorder: Recorder, display: Display, stop: threading.Event) -> None:
    """What the folder holds, then every file that appears or changes, until `stop` is set."""
    tracker = SettleTracker(plan.settle_s)
    taker = _Taker(recorder, display, stop)
    rescan = _rescanner(plan, tracker, taker)
    rescan()
    taker.drain(tracker)
    for changed in wakeups(plan, stop):
        if stop.is_set():
            break
        if changed:
            rescan()
        taker.drain(tracker)


def _rescanner(plan: Plan, tracker: SettleTracker, taker: _Taker) -> Callable[[], None]:
    def rescan() -> None:
        # a full listing rather than the events' paths: it applies the same confinement rules, and
        # catches what the watcher missed while it started
        present = taker.listed(list_candidates(plan.folder, recursive=plan.recursive))
        taker.handled.retain(present)
        for path in present:
            if not taker.handled.is_unchanged(path, stat_file(path)):
                tracker.watch([path])

    return rescan


def wakeups(plan: Plan, stop: threading.Event) -> Iterator[bool]:
    return poll_wakeups(plan, stop) if plan.poll_s else inotify_wakeups(plan, stop)


def inotify_wakeups(plan: Plan, stop: threading.Event) -> Iterator[bool]:
    """True when the folder changed; False every tick without a change (pending files settle then)."""
    import watchfiles

    first = True
    for changes in watchfiles.watch(
        plan.folder,
        watch_filter=None,
        stop_event=stop,
        rust_timeout=int(plan.tick_s * 1000),
        yield_on_timeout=True,
        recursive=plan.recursive,
        raise_interrupt=False,
    ):
        # the first wake-up rescans regardless: files created before the watcher started are caught
        yield bool(changes) or first
        first = False


def poll_wakeups(
    plan: Plan, stop: threading.Event, *, monotonic: Callable[[], float] = time.monotonic
) -> Iterator[bool]:
    """True every `poll_s` seconds (a rescan: on NFS/SMB shares inotify sees nothing), False each tick
    in between."""
    assert plan.poll_s, "poll_wakeups needs poll_s"
    last = monotonic()
    while not stop.wait(plan.tick_s):
        now = monotonic()
        due = now - last >= plan.poll_s
        if due:
            last = now
        yield due
