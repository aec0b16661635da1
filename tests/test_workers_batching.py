"""The sweep that sends on a batch whose walk died (or whose message was never sent), whatever the cpu
queue holds, on both database backends; a walk that fails for good marks its batch failed; and walks in
slices: continuations, checkpoints, stale and twin messages, a walk killed mid-slice."""

from __future__ import annotations

import itertools
from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import select, update

from bayou.intake import batches as walking
from bayou.intake.batches import BatchJob, run_batch
from bayou.settings import Settings
from storage.columns import utcnow
from storage.models import Batch, Document
from workers.app import make_app
from workers.batching import BATCH_STALLED_AFTER_S, BatchTask, ingest_batch_task, resume_stalled_batches
from workers.broker import waiting_messages
from workers.names import INGEST_BATCH_TASK, RASTERIZE_TASK
from workers.queues import CPU_QUEUE
from workers.runtime import Runtime


class RecordingApp:
    """Stands in for the Celery app: records the messages sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[str], str]] = []

    def send_task(self, name: str, *, args: list[str], queue: str) -> None:
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
    the walks sent: documents (`enqueued`) and continuations (`continued`)."""

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
        self.continued: list[tuple[str, str]] = []
        self.job = self.make_job(slices=slices)

    def make_job(self, *, slices: bool) -> BatchJob:
        return BatchJob(
            self.runtime.sessions,
            self.runtime.blobs,
            self.runtime.settings,
            enqueue=lambda document_id, **_: self.enqueued.append(document_id),
            continue_walk=(lambda batch_id, cursor: self.continued.append((batch_id, cursor)))
            if slices
            else None,
        )

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

    def walk_on(self) -> tuple[str | None, list[str]]:
        """Runs the continuations (as the cpu queue would) until none is left: the last status, and the
        cursors they carried."""
        status, cursors = None, []
        while self.continued:
            batch_id, cursor = self.continued.pop(0)
            cursors.append(cursor)
            status = run_batch(self.job, batch_id, cursor)
        return status, cursors


class SteppedClock:
    """A clock that moves only when told: the test decides after which files progress is recorded."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def one_file_slices(monkeypatch):
    # a slice ends as soon as it has taken a file
    monkeypatch.setattr(walking, "WALK_SLICE_S", 0.0)


def test_a_walk_in_slices_counts_what_one_walk_counts(runtime, tmp_path, make_png, one_file_slices):
    whole = Walker(runtime, tmp_path / "whole", make_png, slices=False)
    whole.batch("bat_whole")
    assert run_batch(whole.job, "bat_whole") == "done"
    assert whole.counts("bat_whole") == COUNTS and whole.row("bat_whole").refused_reasons == REASONS
    # other contents (new documents again), the same layout
    walker = Walker(runtime, tmp_path / "sliced", make_png, slices=True, seed=10)
    walker.batch()

    assert run_batch(walker.job, "bat_walk") == "running"
    assert walker.row().cursor == "a.png" and walker.counts() == (1, 1, 0, 0)
    status, cursors = walker.walk_on()

    assert status == "done"
    # a message for each file but the last, each going on after the file before
    assert cursors == WALKED[:-1]
    assert walker.counts() == COUNTS and walker.row().refused_reasons == REASONS
    assert walker.documents() == whole.documents("bat_whole") == ["a.png", "f.png", "x.png"]
    assert len(walker.enqueued) == 3 == len(set(walker.enqueued))


def test_a_stale_or_repeated_message_does_nothing(runtime, tmp_path, make_png, one_file_slices):
    walker = Walker(runtime, tmp_path, make_png, slices=True)
    walker.batch()
    assert run_batch(walker.job, "bat_walk") == "running"
    before = (walker.counts(), walker.row().cursor, walker.row().updated_at, walker.documents())

    # the first message again, and one with a cursor the row does not hold
    assert run_batch(walker.job, "bat_walk") is None
    assert run_batch(walker.job, "bat_walk", "c.png") is None
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
    assert walker.row().cursor == "a.png" and walker.counts() == (1, 1, 0, 0)
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
    assert walker.row().cursor == "a.png" and walker.counts() == (1, 1, 0, 0)
    assert walker.documents() == ["a.png", "x.png"] and len(walker.enqueued) == 2

    # the sweep sends it on from the checkpoint
    monkeypatch.setattr(walking, "take_file", real_take)
    assert run_batch(walker.job, "bat_walk", "a.png") == "done"
    assert walker.counts() == COUNTS and walker.row().refused_reasons == REASONS
    assert walker.documents() == ["a.png", "f.png", "x.png"]
    # x.png is not sent again: its message went out with the first walk
    assert len(walker.enqueued) == 3 == len(set(walker.enqueued))


def test_a_continuation_that_cannot_be_sent_leaves_the_batch_running_at_its_checkpoint(
    runtime, tmp_path, make_png, one_file_slices
):
    walker = Walker(runtime, tmp_path, make_png, slices=True)
    walker.batch()

    def broker_down(batch_id: str, cursor: str) -> None:
        raise OSError("broker down")

    job = BatchJob(runtime.sessions, runtime.blobs, runtime.settings, walker.job.enqueue, broker_down)

    assert run_batch(job, "bat_walk") == "running"
    assert walker.row().status == "running" and walker.row().cursor == "a.png"
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
        session.execute(update(Batch).values(cursor="c.png", total_files=3, refused_reasons={"x": 1}))
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
    _batch(runtime, "bat_stalled", status="running", idle_s=BATCH_STALLED_AFTER_S + 60, cursor="d/e/f.png")
    # a real backlog on the embedded broker's cpu queue: under constant load it never drains
    broker = make_app(runtime.settings)
    try:
        broker.send_task(RASTERIZE_TASK, args=["doc_waiting"], queue=CPU_QUEUE)
        assert waiting_messages(broker, runtime.settings, CPU_QUEUE) == 1
    finally:
        broker.close()
    app = RecordingApp()

    assert resume_stalled_batches(app=app, runtime=runtime) == ["bat_stalled"]
    assert app.sent == [(INGEST_BATCH_TASK, ["bat_stalled", "d/e/f.png"], CPU_QUEUE)]
    assert resume_stalled_batches(app=app, runtime=runtime) == []
