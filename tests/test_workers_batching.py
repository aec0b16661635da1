"""The sweep that starts again a batch whose walk died (or whose message was never sent), on both
database backends; and a walk that fails for good marks its batch failed."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bayou.settings import Settings
from storage.columns import utcnow
from storage.models import Batch
from workers.batching import BATCH_STALLED_AFTER_S, BatchTask, resume_stalled_batches
from workers.names import INGEST_BATCH_TASK
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


def _batch(runtime: Runtime, batch_id: str, *, status: str, idle_s: float) -> None:
    with runtime.sessions() as session:
        session.add(
            Batch(
                id=batch_id,
                folder="scans",
                doc_type="receipt",
                recursive=True,
                status=status,
                root="/nonexistent",
                updated_at=utcnow() - timedelta(seconds=idle_s),
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
    from bayou.intake.batches import BatchJob, run_batch

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
