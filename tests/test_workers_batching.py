"""The sweep that sends on a batch whose walk died (or whose message was never sent), whatever the cpu
queue holds, on both database backends; a walk that fails for good (or past its time limit) marks its
batch failed; and walks in slices: continuations carrying checkpoints (never paths), stale and twin
messages, a walk killed mid-slice, file names that are not UTF-8, slices timed from the first file."""

from __future__ import annotations

import itertools
import os
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError as DatabaseOperationalError

from bayou.intake import batches as walking
from bayou.intake import folders
from bayou.intake.batches import BatchJob, run_batch
from bayou.settings import Settings
from storage.columns import utcnow
from storage.models import Batch, Document
from workers.app import make_app
from workers.batching import (
    BATCH_STALLED_AFTER_S,
    WALK_LIMITS_S,
    BatchTask,
    ingest_batch_task,
    resume_stalled_batches,
)
from workers.broker import waiting_messages
from workers.names import INGEST_BATCH_TASK, RASTERIZE_TASK
from workers.queues import CPU_QUEUE
from workers.runtime import Runtime


class RecordingApp:
    """Stands in for the Celery app: records the messages sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[object], str]] = []

    def send_task(self, name: str, *, args: list[object], queue: str) -> None:
        self.sent.append((name, args, queue))


@pytest.fixture
def runtime(tmp_path, db_engine, db_sessions, blob_store) -> Runtime:
    # the embedded broker's file does not exist in tmp_path: no messages are waiting
    settings = Settings(_env_file=None, data_dir=tmp_path, broker_url="")
    return Runtime(settings=settings, db=db_engine, sessions=db_sessions, blobs=blob_store)


def _batch(
    runtime: Runtime,
    batch_id: str,
    *,
    status: str,
    idle_s: float,
    cursor: str | None = None,
    checkpoint: int = 0,
    root: str = "/nonexistent",
) -> None:
    with runtime.sessions() as session:
        session.add(
            Batch(
                id=batch_id,
                folder="scans",
                doc_type="receipt",
                recursive=True,
                status=status,
                root=root,
                updated_at=utcnow() - timedelta(seconds=idle_s),
                cursor=cursor,
                checkpoint=checkpoint,
            )
        )
        session.commit()


def test_only_stalled_running_batches_are_sent_again_and_once(runtime):
    _batch(runtime, "bat_stalled", status="running", idle_s=BATCH_STALLED_AFTER_S + 60)
    _batch(runtime, "bat_walking", status="running", idle_s=5)
    _batch(runtime, "bat_finished", status="done", idle_s=BATCH_STALLED_AFTER_S + 60)
    app = RecordingApp()

    assert resume_stalled_batches(app=app, runtime=runtime) == ["bat_stalled"]
    assert app.sent == [(INGEST_BATCH_TASK, ["bat_stalled"], CPU_QUEUE)]
    # claimed: the next sweep leaves it to the message just sent
    assert resume_stalled_batches(app=app, runtime=runtime) == []
    assert len(app.sent) == 1


def test_a_walk_that_fails_for_good_fails_its_batch(runtime, monkeypatch):
    _batch(runtime, "bat_broken", status="running", idle_s=0)
    monkeypatch.setattr("workers.batching.get_runtime", lambda: runtime)

    BatchTask().on_failure(ValueError("boom"), "task-1", ["bat_broken"], {}, None)

    with runtime.sessions() as session:
        batch = session.get(Batch, "bat_broken")
        assert (batch.status, batch.error_code) == ("failed", "internal_error")


def test_a_walk_counts_and_finishes_on_both_backends(runtime, tmp_path, make_png):
    scans = tmp_path / "inbox" / "scans"
    scans.mkdir(parents=True)
    for name, seed in (("a.png", 1), ("b.png", 2), ("copy.png", 1)):
        (scans / name).write_bytes(make_png(seed))
    (scans / "empty.png").write_bytes(b"")
    with runtime.sessions() as session:
        session.add(
            Batch(
                id="bat_walk",
                folder="scans",
                doc_type="receipt",
                recursive=True,
                status="running",
                root=str(tmp_path / "inbox"),
            )
        )
        session.commit()
    sent: list[str] = []
    job = BatchJob(runtime.sessions, runtime.blobs, runtime.settings, enqueue=lambda d, **_: sent.append(d))

    assert run_batch(job, "bat_walk") == "done"

    with runtime.sessions() as session:
        batch = session.get(Batch, "bat_walk")
        counts = (batch.total_files, batch.created_count, batch.duplicate_count, batch.refused_count)
        assert counts == (4, 2, 1, 1) and batch.refused_reasons == {"empty_file": 1}
    assert len(sent) == 2


# --- walks in slices, checkpoints, stale and twin messages, on both backends ---

# in walk order; "b" is a directory whose name sorts between file names
WALKED = ["a.png", "b/x.png", "c.png", "d/e/f.png", "empty.png", "notes.txt"]
# a.png, b/x.png and d/e/f.png are new, c.png is a.png again, empty.png and notes.txt are refused
COUNTS = (6, 3, 1, 2)
REASONS = {"empty_file": 1, "unsupported_type": 1}


class Walker:
    """A running batch over a folder of WALKED, a job that walks it (in slices, or in one go), and what
    the walks sent: documents (`enqueued`) and continuations (`continued`, with the row's cursor when
    each was sent in `positions`)."""

    def __init__(self, runtime: Runtime, tmp_path, make_png, *, slices: bool, seed: int = 0) -> None:
        self.runtime = runtime
        self.root = tmp_path / "inbox"
        scans = self.root / "scans"
        (scans / "b").mkdir(parents=True)
        (scans / "d" / "e").mkdir(parents=True)
        for relative, offset in (("a.png", 1), ("b/x.png", 2), ("c.png", 1), ("d/e/f.png", 3)):
            (scans / relative).write_bytes(make_png(seed + offset))
        (scans / "b" / ".partial.png").write_bytes(make_png(seed + 4))
        (scans / "empty.png").write_bytes(b"")
        (scans / "notes.txt").write_text("not a document")
        self.enqueued: list[str] = []
        self.continued: list[tuple[str, int]] = []
        self.positions: list[str | None] = []
        self.job = self.make_job(slices=slices)

    def make_job(self, *, slices: bool) -> BatchJob:
        return BatchJob(
            self.runtime.sessions,
            self.runtime.blobs,
            self.runtime.settings,
            enqueue=lambda document_id, **_: self.enqueued.append(document_id),
            continue_walk=self.continue_walk if slices else None,
        )

    def continue_walk(self, batch_id: str, checkpoint: int) -> None:
        self.continued.append((batch_id, checkpoint))
        self.positions.append(self.row(batch_id).cursor)

    def batch(self, batch_id: str = "bat_walk") -> None:
        _batch(self.runtime, batch_id, status="running", idle_s=0, root=str(self.root))

    def row(self, batch_id: str = "bat_walk") -> Batch:
        with self.runtime.sessions() as session:
            return session.get(Batch, batch_id)

    def counts(self, batch_id: str = "bat_walk") -> tuple[int, int, int, int]:
        batch = self.row(batch_id)
        return batch.total_files, batch.created_count, batch.duplicate_count, batch.refused_count

    def documents(self, batch_id: str = "bat_walk") -> list[str]:
        with self.runtime.sessions() as session:
            query = select(Document.filename).where(Document.batch_id == batch_id).order_by(Document.filename)
            return list(session.scalars(query))

    def walk_on(self) -> tuple[str | None, list[int]]:
        """Runs the continuations (as the cpu queue would) until none is left: the last status, and the
        checkpoints they carried."""
        status, checkpoints = None, []
        while self.continued:
            batch_id, checkpoint = self.continued.pop(0)
            checkpoints.append(checkpoint)
            status = run_batch(self.job, batch_id, checkpoint)
        return status, checkpoints


class SteppedClock:
    """A clock that moves only when told: the test decides after which files progress is recorded."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def one_file_slices(monkeypatch):
    # a slice ends as soon as it has taken a file (however long the listing took)
    monkeypatch.setattr(walking, "WALK_SLICE_S", 0.0)
    monkeypatch.setattr(walking, "SLICE_PER_LISTING", 0)


def test_a_walk_in_slices_counts_what_one_walk_counts(runtime, tmp_path, make_png, one_file_slices):
    whole = Walker(runtime, tmp_path / "whole", make_png, slices=False)
    whole.batch("bat_whole")
    assert run_batch(whole.job, "bat_whole") == "done"
    assert whole.counts("bat_whole") == COUNTS and whole.row("bat_whole").refused_reasons == REASONS
    # other contents (new documents again), the same layout
    walker = Walker(runtime, tmp_path / "sliced", make_png, slices=True, seed=10)
    walker.batch()

    assert run_batch(walker.job, "bat_walk") == "running"
    assert (walker.row().checkpoint, walker.row().cursor) == (1, "a.png")
    assert walker.counts() == (1, 1, 0, 0)
    status, checkpoints = walker.walk_on()

    assert status == "done"
    # a message for each file but the last, each going on from the checkpoint after the file before; the
    # files' names stay in the database
    assert checkpoints == [1, 2, 3, 4, 5] and walker.positions == WALKED[:-1]
    assert walker.row().checkpoint == 6 and walker.row().cursor == WALKED[-1]
    assert walker.counts() == COUNTS and walker.row().refused_reasons == REASONS
    assert walker.documents() == whole.documents("bat_whole") == ["a.png", "f.png", "x.png"]
    assert len(walker.enqueued) == 3 == len(set(walker.enqueued))


def test_a_stale_or_repeated_message_does_nothing(runtime, tmp_path, make_png, one_file_slices):
    walker = Walker(runtime, tmp_path, make_png, slices=True)
    walker.batch()
    assert run_batch(walker.job, "bat_walk") == "running"
    before = (walker.counts(), walker.row().cursor, walker.row().updated_at, walker.documents())

    # the first message again, and one with a checkpoint the row does not hold
    assert run_batch(walker.job, "bat_walk") is None
    assert run_batch(walker.job, "bat_walk", 0) is None
    assert run_batch(walker.job, "bat_walk", 3) is None
    assert (walker.counts(), walker.row().cursor, walker.row().updated_at, walker.documents()) == before
    assert len(walker.continued) == 1 and len(walker.enqueued) == 1

    # the continuation twice (the sweep sent it again while it waited): the second one does nothing
    continuation = walker.continued.pop(0)
    assert run_batch(walker.job, *continuation) == "running"
    assert run_batch(walker.job, *continuation) is None
    assert walker.walk_on()[0] == "done" and walker.counts() == COUNTS
    assert run_batch(walker.job, *continuation) is None


def test_twin_walks_from_one_cursor_count_once(runtime, tmp_path, make_png, monkeypatch, one_file_slices):
    walker = Walker(runtime, tmp_path, make_png, slices=True)
    walker.batch()
    real_take = walking.take_file
    twin: list[str | None] = []

    def twin_starts_first(*args, **kwargs):
        if not twin:
            # a twin (the same message delivered twice) starts before this walk records anything, takes
            # a slice (one file) and records it
            twin.append("started")
            twin.append(run_batch(walker.job, "bat_walk"))
        return real_take(*args, **kwargs)

    monkeypatch.setattr(walking, "take_file", twin_starts_first)
    # this walk records progress after every file: it looks at the row after its first
    this = walker.make_job(slices=False)
    status = run_batch(this, "bat_walk", clock=itertools.count(step=10).__next__)

    # the twin recorded first: this walk stopped without writing, the twin's continuation goes on
    assert twin == ["started", "running"] and status is None
    assert (walker.row().checkpoint, walker.row().cursor) == (1, "a.png")
    assert walker.counts() == (1, 1, 0, 0)
    assert walker.walk_on()[0] == "done"
    assert walker.counts() == COUNTS and walker.row().refused_reasons == REASONS
    assert len(walker.enqueued) == 3 == len(set(walker.enqueued))


def test_a_walk_killed_mid_slice_resumes_from_its_checkpoint_with_exact_counts(
    runtime, tmp_path, make_png, monkeypatch
):
    walker = Walker(runtime, tmp_path, make_png, slices=True)
    walker.batch()
    clock = SteppedClock()
    # a slice long enough for the whole folder: the walk dies inside its first slice
    monkeypatch.setattr(walking, "WALK_SLICE_S", 100 * walking.PROGRESS_EVERY_S)
    real_take = walking.take_file
    taken: list[object] = []

    def killed_at_the_fourth_file(*args, **kwargs):
        if len(taken) == 3:
            raise SystemExit("the worker was killed")
        taken.append(real_take(*args, **kwargs))
        if len(taken) == 1:
            clock.now += walking.PROGRESS_EVERY_S  # progress recorded after the first file only
        return taken[-1]

    monkeypatch.setattr(walking, "take_file", killed_at_the_fourth_file)
    with pytest.raises(SystemExit):
        run_batch(walker.job, "bat_walk", clock=clock)
    # the checkpoint: one file; b/x.png and c.png were taken after it (x.png is a document already)
    assert (walker.row().checkpoint, walker.row().cursor) == (1, "a.png")
    assert walker.counts() == (1, 1, 0, 0)
    assert walker.documents() == ["a.png", "x.png"] and len(walker.enqueued) == 2

    # the sweep sends it on from the checkpoint
    monkeypatch.setattr(walking, "take_file", real_take)
    assert run_batch(walker.job, "bat_walk", 1) == "done"
    assert walker.counts() == COUNTS and walker.row().refused_reasons == REASONS
    assert walker.documents() == ["a.png", "f.png", "x.png"]
    # x.png is not sent again: its message went out with the first walk
    assert len(walker.enqueued) == 3 == len(set(walker.enqueued))


def test_a_continuation_that_cannot_be_sent_leaves_the_batch_running_at_its_checkpoint(
    runtime, tmp_path, make_png, one_file_slices
):
    walker = Walker(runtime, tmp_path, make_png, slices=True)
    walker.batch()

    def broker_down(batch_id: str, checkpoint: int) -> None:
        raise OSError("broker down")

    job = BatchJob(runtime.sessions, runtime.blobs, runtime.settings, walker.job.enqueue, broker_down)

    assert run_batch(job, "bat_walk") == "running"
    assert walker.row().status == "running"
    assert (walker.row().checkpoint, walker.row().cursor) == (1, "a.png")
    assert walker.counts() == (1, 1, 0, 0)


@pytest.mark.parametrize("again", ["retry", "redelivery"])
def test_the_task_takes_old_messages_and_a_retry_goes_on_from_the_last_checkpoint(
    again, runtime, tmp_path, make_png, monkeypatch
):
    walker = Walker(runtime, tmp_path, make_png, slices=False)
    walker.batch()
    monkeypatch.setattr("workers.batching.get_runtime", lambda: runtime)
    monkeypatch.setattr("workers.batching.batch_job", lambda _runtime, _app: walker.job)
    first_try = SimpleNamespace(app=None, request=SimpleNamespace(retries=0, delivery_info={}))
    # a retry after a transient fault, or the message Redis gives back after its worker died
    retry = SimpleNamespace(
        app=None,
        request=SimpleNamespace(
            retries=int(again == "retry"), delivery_info={"redelivered": again == "redelivery"}
        ),
    )
    # the first try of the message (the batch id alone) recorded up to c.png, then met a transient fault
    with runtime.sessions() as session:
        session.execute(
            update(Batch).values(checkpoint=2, cursor="c.png", total_files=3, refused_reasons={"x": 1})
        )
        session.commit()

    assert ingest_batch_task(first_try, "bat_walk") is None  # the same message anew: stale
    assert ingest_batch_task(retry, "bat_walk") == "done"
    row = walker.row()
    assert row.total_files == 6 and row.refused_reasons == {"x": 1, **REASONS}

    walker.batch("bat_old")
    assert ingest_batch_task(first_try, "bat_old") == "done"
    # bat_walk (resumed after c.png) has f.png's document: a duplicate here, as c.png is
    assert walker.counts("bat_old") == (6, 2, 2, 2)


def test_the_sweep_sends_a_stalled_batch_on_from_its_checkpoint_whatever_the_cpu_backlog(runtime):
    _batch(
        runtime,
        "bat_stalled",
        status="running",
        idle_s=BATCH_STALLED_AFTER_S + 60,
        cursor="d/e/f.png",
        checkpoint=4,
    )
    # a real backlog on the embedded broker's cpu queue: under constant load it never drains
    broker = make_app(runtime.settings)
    try:
        broker.send_task(RASTERIZE_TASK, args=["doc_waiting"], queue=CPU_QUEUE)
        assert waiting_messages(broker, runtime.settings, CPU_QUEUE) == 1
    finally:
        broker.close()
    app = RecordingApp()

    assert resume_stalled_batches(app=app, runtime=runtime) == ["bat_stalled"]
    # the row's checkpoint: the path stays in the database
    assert app.sent == [(INGEST_BATCH_TASK, ["bat_stalled", 4], CPU_QUEUE)]
    assert resume_stalled_batches(app=app, runtime=runtime) == []


# --- file names that are not UTF-8, slices timed from the first file, time limits ---

NOT_UTF8 = os.fsdecode(b"caf\xe9.png")  # "caf\udce9.png", as os.scandir gives it: no str column takes that


@pytest.mark.parametrize(
    ("name", "slices"),
    [(f"z{NOT_UTF8}", False), (NOT_UTF8, True)],
    ids=["the-last-file", "at-a-slice-boundary"],
)
def test_a_file_name_that_is_not_utf8_is_a_checkpoint_like_any_other(
    runtime, tmp_path, make_png, one_file_slices, name, slices
):
    walker = Walker(runtime, tmp_path, make_png, slices=slices)
    (walker.root / "scans" / name).write_bytes(make_png(7))
    walker.batch()
    walked = sorted([*WALKED, name], key=lambda relative: relative.split("/"))

    status = run_batch(walker.job, "bat_walk")
    if slices:
        assert status == "running"
        status, checkpoints = walker.walk_on()
        assert checkpoints == list(range(1, len(walked)))

    assert status == "done"
    assert walker.counts() == (7, 4, 1, 2) and walker.row().checkpoint == (len(walked) if slices else 1)
    # stored in ASCII, losslessly: the bytes of the name, percent-encoded
    stored = [*walker.positions, walker.row().cursor]
    assert stored == [quote(os.fsencode(relative), safe="/") for relative in walked[-len(stored) :]]
    assert "caf%E9.png" in "".join(stored)
    assert len(walker.enqueued) == 4 == len(set(walker.enqueued))


@pytest.mark.parametrize(
    ("listing_s", "per_file_s", "first_slice", "status"),
    [
        # 0.25 s to the first file: a slice of 1.25 s from it (3 files), not 1 s from the start (2 files)
        (0.25, 0.5, 3, "running"),
        # 2 s to the first file: a slice of 10 s (the whole folder), not one file per slice
        (2.0, 0.5, 6, "done"),
        # 20 s to the first file: a slice of a minute (2 files), not 100 s (4): well inside the time limit
        (20.0, 30.0, 2, "running"),
    ],
)
def test_a_slice_is_timed_from_its_first_file_and_lasts_five_times_the_listing_at_least(
    runtime, tmp_path, make_png, monkeypatch, listing_s, per_file_s, first_slice, status
):
    walker = Walker(runtime, tmp_path, make_png, slices=True)
    walker.batch()
    clock = SteppedClock()
    scans, real_entries, real_take = walker.root / "scans", folders._sorted_entries, walking.take_file

    def slow_listing(directory):
        # the folder itself is big (or on a slow share): listing and sorting it takes `listing_s`
        if Path(directory) == scans:
            clock.now += listing_s
        return real_entries(directory)

    def slow_take(*args, **kwargs):
        clock.now += per_file_s
        return real_take(*args, **kwargs)

    monkeypatch.setattr(folders, "_sorted_entries", slow_listing)
    monkeypatch.setattr(walking, "take_file", slow_take)
    monkeypatch.setattr(walking, "WALK_SLICE_S", 1.0)
    monkeypatch.setattr(walking, "WALK_SLICE_MAX_S", 60.0)

    assert run_batch(walker.job, "bat_walk", clock=clock) == status
    assert walker.row().total_files == first_slice


def test_the_walk_task_has_time_limits(tmp_path):
    app = make_app(Settings(_env_file=None, data_dir=tmp_path, broker_url=""))
    try:
        task = app.tasks[INGEST_BATCH_TASK]
        assert (task.soft_time_limit, task.time_limit) == WALK_LIMITS_S
    finally:
        app.close()
    assert WALK_LIMITS_S[0] < WALK_LIMITS_S[1]


def test_a_walk_past_its_soft_time_limit_fails_its_batch_timeout_and_a_transient_fault_does_not(
    runtime, monkeypatch
):
    for batch_id in ("bat_hung", "bat_flaky", "bat_unreadable"):
        _batch(runtime, batch_id, status="running", idle_s=0, checkpoint=3)
    monkeypatch.setattr("workers.batching.get_runtime", lambda: runtime)
    task = BatchTask()

    task.on_failure(SoftTimeLimitExceeded(300), "task-1", ["bat_hung", 3], {}, None)
    task.on_failure(
        DatabaseOperationalError("UPDATE", {}, OSError("gone")), "task-2", ["bat_flaky", 3], {}, None
    )
    # an OSError names its file: the batch's error says what failed, not where
    task.on_failure(
        PermissionError(13, "Permission denied", "/in/jane-doe.png"), "t3", ["bat_unreadable"], {}, None
    )

    with runtime.sessions() as session:
        hung, flaky, unreadable = (
            session.get(Batch, batch_id) for batch_id in ("bat_hung", "bat_flaky", "bat_unreadable")
        )
        assert (hung.status, hung.error_code) == ("failed", "timeout")
        assert (flaky.status, flaky.error_code) == ("running", None)
        assert (unreadable.status, unreadable.error_code) == ("failed", "internal_error")
        assert unreadable.error_message == "PermissionError: Permission denied"
