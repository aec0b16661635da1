"""The workers' tunables are settings: batch size and wait, the extract task's time limit and the
stuck-document deadline reach the tasks, the sweep, the embedded worker and `bayou worker`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from bayou.settings import Settings
from workers.app import celery_config, get_app
from workers.names import EXTRACT_BATCH_TASK, EXTRACT_TASK


def test_the_extract_limits_and_the_batcher_follow_the_settings(
    worker_env: Callable[..., dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BAYOU_BATCH_SIZE", "3")
    monkeypatch.setenv("BAYOU_BATCH_WAIT_S", "0.25")
    monkeypatch.setenv("BAYOU_EXTRACT_TIME_LIMIT_S", "120")
    monkeypatch.setenv("BAYOU_STUCK_AFTER_S", "600")
    worker_env()
    tasks = get_app().tasks
    assert (tasks[EXTRACT_TASK].soft_time_limit, tasks[EXTRACT_TASK].time_limit) == (120, 180)
    assert (tasks[EXTRACT_BATCH_TASK].flush_every, tasks[EXTRACT_BATCH_TASK].flush_interval) == (3, 0.25)
    schedule = get_app().conf.beat_schedule["requeue-stuck"]
    assert schedule["kwargs"] == {"older_than_s": 600}


def test_the_defaults_are_the_documented_ones(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path)
    assert (settings.batch_size, settings.batch_wait_s) == (8, 0.5)
    assert (settings.extract_time_limit_s, settings.extract_hard_limit_s) == (900, 960)
    assert settings.stuck_after_s == 1800
    assert celery_config(settings)["beat_schedule"]["requeue-stuck"]["kwargs"] == {"older_than_s": 1800}


@pytest.mark.parametrize(
    ("values", "mentions"),
    [
        ({"stuck_after_s": 900}, "stuck_after_s"),  # shorter than the extract task's hard limit (960)
        ({"extract_time_limit_s": 3600}, "stuck_after_s"),  # the limit outgrew the default deadline
        ({"batch_size": 0}, "batch_size"),
        ({"batch_wait_s": -1}, "batch_wait_s"),
    ],
)
def test_settings_that_would_run_live_work_twice_or_never_are_refused(
    tmp_path: Path, values: dict[str, float], mentions: str
) -> None:
    with pytest.raises(ValidationError, match=mentions):
        Settings(_env_file=None, data_dir=tmp_path, **values)


def test_a_gpu_only_worker_prefetches_a_batch_of_the_configured_size() -> None:
    from bayou.cli.worker import _batching

    assert _batching(["gpu.2b"], 5) == ["--prefetch-multiplier=5"]
    assert _batching(["cpu", "gpu.2b"], 5) == []  # it would hoard rasterisations other workers could run


def test_the_sweep_uses_the_stuck_deadline_setting(
    worker_env: Callable[..., dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from storage.columns import utcnow
    from storage.models import Document
    from tests.conftest import WorkerDocuments
    from workers.runtime import check_schema, get_runtime
    from workers.stuck import requeue_stuck

    monkeypatch.setenv("BAYOU_EXTRACT_TIME_LIMIT_S", "10")
    monkeypatch.setenv("BAYOU_STUCK_AFTER_S", "100")
    worker_env()
    runtime = get_runtime()
    check_schema(runtime.settings)
    documents = WorkerDocuments()
    younger, older = (documents.create(runtime, documents.png(64, 64, c)) for c in ("white", "black"))
    with runtime.sessions() as session:
        for document_id, age_s in ((younger, 50), (older, 150)):
            session.execute(
                update(Document)
                .where(Document.id == document_id)
                .values(updated_at=utcnow() - timedelta(seconds=age_s))
            )
        session.commit()
    assert requeue_stuck() == [older]


def test_the_batched_extraction_has_the_extract_time_limits(
    worker_env: Callable[..., dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers.microbatch import TimeLimitedPool

    monkeypatch.setenv("BAYOU_EXTRACT_TIME_LIMIT_S", "120")
    worker_env()
    batch_task = get_app().tasks[EXTRACT_BATCH_TASK]
    assert (batch_task.soft_time_limit, batch_task.time_limit) == (120, 180)

    class RecordingPool:  # stands in for the worker's pool: records what a batch is handed over with
        def __init__(self) -> None:
            self.options: dict[str, object] = {}

        def apply_async(self, target, args=None, kwargs=None, **options):
            self.options = options

    # celery-batches passes no time limits to the pool; the wrapper adds the task's
    pool = RecordingPool()
    TimeLimitedPool(pool, soft_s=batch_task.soft_time_limit, hard_s=batch_task.time_limit).apply_async(
        print, ()
    )
    assert (pool.options["soft_timeout"], pool.options["timeout"]) == (120, 180)


def test_a_batch_past_its_soft_time_limit_fails_its_documents_as_timeout(
    worker_env: Callable[..., dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from celery.exceptions import SoftTimeLimitExceeded
    from celery_batches import SimpleRequest

    import workers.tasks
    from storage.documents import set_status
    from storage.models import Document, DocumentStatus
    from tests.conftest import WorkerDocuments
    from workers.runtime import check_schema, get_runtime
    from workers.tasks import extract_batch_task

    worker_env()
    runtime = get_runtime()
    check_schema(runtime.settings)
    documents = WorkerDocuments()
    document_id = documents.create(runtime, documents.png(64, 64))

    def too_slow(runtime, jobs, **kwargs):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(workers.tasks, "extract_batch", too_slow)
    request = SimpleRequest(
        id="m1",
        name=EXTRACT_BATCH_TASK,
        args=[document_id],
        kwargs={},
        delivery_info={},
        hostname="h",
        ignore_result=True,
        reply_to=None,
        correlation_id="m1",
        request_dict={},
    )
    with runtime.sessions() as session:
        set_status(session, document_id, DocumentStatus.PROCESSING)
    extract_batch_task(get_app().tasks[EXTRACT_BATCH_TASK], [request])
    with runtime.sessions() as session:
        document = session.get(Document, document_id)
        assert (document.status, document.error_code) == ("failed", "timeout")
