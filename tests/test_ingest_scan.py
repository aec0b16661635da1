"""bayou.ingest: which files are candidates, when a file has settled, what the summary says."""

from __future__ import annotations

import os
from pathlib import Path

from bayou.ingest.scan import FileStat, list_candidates, stat_file
from bayou.ingest.sending import Sender
from bayou.ingest.settle import NS_PER_S, SettleTracker
from bayou.ingest.state import Handled
from bayou.ingest.tally import Outcome, Tally
from bayou.intake.folders import FileIdentity


def test_candidates_are_visible_regular_files_in_a_stable_order(tmp_path: Path) -> None:
    (tmp_path / "b.png").write_bytes(b"b")
    (tmp_path / "a.pdf").write_bytes(b"a")
    (tmp_path / ".partial.png").write_bytes(b"p")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.png").write_bytes(b"c")

    assert _paths(list_candidates(tmp_path, recursive=False)) == [tmp_path / "a.pdf", tmp_path / "b.png"]
    listed = list_candidates(tmp_path, recursive=True)
    assert _paths(listed) == [tmp_path / "a.pdf", tmp_path / "b.png", tmp_path / "sub" / "c.png"]
    # each with the identity of the file checked, which the read will be held to
    assert [c.identity for c in listed] == [FileIdentity.of(os.lstat(c.path)) for c in listed]


def _paths(candidates: list) -> list[Path]:
    return [candidate.path for candidate in candidates]


def test_symlinks_that_lead_outside_the_folder_are_skipped(linked_folder: Path) -> None:
    # a link to a file inside is the same file, listed once
    assert _paths(list_candidates(linked_folder, recursive=True)) == [linked_folder / "own.png"]


def test_stat_of_a_vanished_file_is_none(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(b"12345")
    assert stat_file(path) == FileStat(5, path.stat().st_mtime_ns)
    path.unlink()
    assert stat_file(path) is None


class FakeClock:
    """Stands in for time.monotonic and time.time, so settling can be stepped through exactly."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _tracker(settle_s: float, clock: FakeClock) -> SettleTracker:
    return SettleTracker(settle_s, monotonic=clock, wall_clock=clock)


def _touch(path: Path, data: bytes, mtime_s: float) -> None:
    path.write_bytes(data)
    os.utime(path, ns=(int(mtime_s * NS_PER_S), int(mtime_s * NS_PER_S)))


def test_a_file_being_written_is_taken_only_after_staying_still_for_settle_seconds(tmp_path: Path) -> None:
    clock = FakeClock(1000.0)
    path = tmp_path / "scan.png"
    _touch(path, b"part", mtime_s=clock.now)
    tracker = _tracker(5, clock)
    tracker.watch([path])

    clock.now += 4
    assert tracker.take_settled() == []
    _touch(path, b"part-more", mtime_s=clock.now)  # the writer is still at it
    clock.now += 4
    assert tracker.take_settled() == []  # 4 s still, not 5
    clock.now += 1.5
    assert tracker.take_settled() == [(path, stat_file(path))]
    assert len(tracker) == 0


def test_a_file_untouched_for_longer_than_settle_is_taken_at_once(tmp_path: Path) -> None:
    clock = FakeClock(1000.0)
    path = tmp_path / "old.png"
    _touch(path, b"old", mtime_s=clock.now - 60)
    tracker = _tracker(5, clock)
    tracker.watch([path])
    assert tracker.take_settled() == [(path, stat_file(path))]


def test_a_file_that_vanishes_while_settling_is_dropped(tmp_path: Path) -> None:
    clock = FakeClock(1000.0)
    path = tmp_path / "gone.png"
    _touch(path, b"x", mtime_s=clock.now)
    tracker = _tracker(5, clock)
    tracker.watch([path])
    path.unlink()
    clock.now += 10
    assert tracker.take_settled() == []
    assert len(tracker) == 0


def test_summary_counts_refusals_by_code_and_says_what_was_not_sent() -> None:
    tally = Tally()
    for outcome, code in [
        (Outcome.QUEUED, None),
        (Outcome.QUEUED, None),
        (Outcome.DUPLICATE, None),
        (Outcome.REFUSED, "empty_file"),
        (Outcome.REFUSED, "corrupt_file"),
        (Outcome.REFUSED, "empty_file"),
    ]:
        tally.count(outcome, code)
    assert tally.summary() == "queued 2, duplicate 1, refused 3 (corrupt_file 1, empty_file 2)"
    tally.unsent, tally.unsent_reason = 2, "the broker is down"
    assert tally.summary().startswith(
        "queued 2, duplicate 1, refused 3 (corrupt_file 1, empty_file 2); 2 not sent"
    )


def test_sender_stops_trying_after_the_first_failure() -> None:
    calls = []

    def failing_enqueue(document_id: str, *, model: str | None, doc_type: str) -> None:
        """Stands in for a broker that refuses connections (the real one is tested in test_ingest_run)."""
        calls.append(document_id)
        raise ConnectionError("refused")

    sender = Sender(failing_enqueue)
    assert sender.send("doc_1", model=None, doc_type="receipt") is False
    assert sender.send("doc_2", model=None, doc_type="receipt") is False
    assert calls == ["doc_1"]
    assert sender.problem is not None and "ConnectionError" in sender.problem


def test_handled_files_are_known_until_they_change_or_leave(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(b"one")
    handled = Handled()
    handled.add(path, stat_file(path))
    assert handled.is_unchanged(path, stat_file(path))
    path.write_bytes(b"three")
    assert not handled.is_unchanged(path, stat_file(path))
    handled.add(path, stat_file(path))
    handled.retain([])
    assert not handled.is_unchanged(path, stat_file(path))
