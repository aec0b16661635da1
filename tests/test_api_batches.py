"""POST /v1/batches: a folder under the batch root, refused at once when outside it or missing, else
recorded as running and walked in the background; each supported file enqueued once, nothing outside
the root ever read. An app with an enqueue of its own (here the recording one) walks in-process after the
response (a background task, which TestClient finishes before it returns); the last test has the real
embedded worker walk it, as an app with the workers' enqueue does."""

from __future__ import annotations

import itertools
import os
import time

import pytest
from sqlalchemy import func, select

from api.batches import batch_starter
from bayou.intake.batches import BatchJob, run_batch
from storage.models import Batch, Document
from workers.dispatch import enqueue as workers_enqueue


@pytest.fixture
def root(tmp_path):
    path = tmp_path / "inbox"
    path.mkdir()
    return path


def _job(client) -> BatchJob:
    state = client.app.state.bayou
    return BatchJob(state.sessions, state.blobs, state.settings, enqueue=state.enqueue)


def hold_walks(client) -> list[str]:
    """Batches of this client are recorded but not walked; returns the list their ids land in."""
    held: list[str] = []
    client.app.dependency_overrides[batch_starter] = lambda: held.append
    return held


@pytest.fixture
def client(make_api_client, root):
    return make_api_client(app_kwargs={"batch_root": root})


@pytest.fixture
def outside(tmp_path, make_png):
    path = tmp_path / "secret"
    path.mkdir()
    (path / "licence.png").write_bytes(make_png(99))
    return path


def _counts(client) -> tuple[int, int]:
    with client.app.state.bayou.sessions() as session:
        documents = session.scalar(select(func.count()).select_from(Document))
        batches = session.scalar(select(func.count()).select_from(Batch))
    return documents, batches


def _fill(folder, make_png) -> None:
    scans = folder / "scans"
    (scans / "sub").mkdir(parents=True)
    (scans / "a.png").write_bytes(make_png(1))
    (scans / "b.png").write_bytes(make_png(2))
    (scans / "copy-of-a.png").write_bytes(make_png(1))
    (scans / "notes.txt").write_text("not a document")
    (scans / ".partial.png").write_bytes(make_png(3))
    (scans / "sub" / "c.png").write_bytes(make_png(4))


def _batch(client, **body) -> dict:
    """POST, checked to answer 202 running before any file is counted, then the batch as GET has it."""
    response = client.post("/v1/batches", json={"doc_type": "receipt", **body})
    assert response.status_code == 202, response.text
    started = response.json()
    assert started["status"] == "running" and started["total_files"] == 0 and started["statuses"] == {}
    return client.get(f"/v1/batches/{started['id']}").json()


def _tally(batch: dict) -> tuple[int, int, int, int]:
    return batch["total_files"], batch["created"], batch["duplicates"], batch["refused"]


def test_batch_answers_at_once_and_enqueues_each_supported_file_once(client, root, make_png):
    _fill(root, make_png)
    batch = _batch(client, folder="scans")
    assert batch["status"] == "done" and batch["error"] is None
    assert _tally(batch) == (5, 3, 1, 1)
    assert batch["refused_reasons"] == {"unsupported_type": 1}
    assert batch["statuses"] == {"queued": 3}
    calls = client.app.state.bayou.enqueue.calls
    assert len(calls) == 3 and {call[1:] for call in calls} == {("h2ovl-800m", "receipt")}

    again = _batch(client, folder="scans/")
    assert (again["created"], again["duplicates"]) == (0, 4)
    assert len(calls) == 3
    assert client.get(f"/v1/batches/{batch['id']}").json() == batch
    listed = client.get("/v1/documents").json()["items"]
    assert sorted(item["filename"] for item in listed) == ["a.png", "b.png", "c.png"]


def test_a_batch_is_running_until_walked(make_api_client, root, make_png):
    client = make_api_client(app_kwargs={"batch_root": root})
    held = hold_walks(client)
    _fill(root, make_png)
    response = client.post("/v1/batches", json={"folder": "scans", "doc_type": "receipt"})
    assert response.status_code == 202
    assert client.get(f"/v1/batches/{held[0]}").json()["status"] == "running"
    assert _counts(client) == (0, 1)

    assert run_batch(_job(client), held[0]) == "done"
    assert _tally(client.get(f"/v1/batches/{held[0]}").json()) == (5, 3, 1, 1)


def test_non_recursive_batch_stays_in_the_folder(client, root, make_png):
    _fill(root, make_png)
    batch = _batch(client, folder="scans", doc_type="check", recursive=False)
    assert (batch["total_files"], batch["created"]) == (4, 2)


@pytest.mark.parametrize("folder", ["../secret", "scans/../../secret", "/etc", "a\x00b", "..\\secret"])
def test_folders_outside_the_root_are_refused(client, root, outside, folder):
    (root / "scans").mkdir()
    response = client.post("/v1/batches", json={"folder": folder, "doc_type": "receipt"})
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_folder"
    assert _counts(client) == (0, 0)


def test_a_symlinked_folder_leading_outside_is_refused(client, root, outside):
    os.symlink(outside, root / "link")
    response = client.post("/v1/batches", json={"folder": "link", "doc_type": "receipt"})
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_folder"
    assert _counts(client) == (0, 0)


def test_a_folder_swapped_for_a_link_outside_before_the_walk_fails_the_batch(
    make_api_client, root, outside, make_png
):
    client = make_api_client(app_kwargs={"batch_root": root})
    held = hold_walks(client)
    (root / "scans").mkdir()
    (root / "scans" / "ok.png").write_bytes(make_png(5))
    assert client.post("/v1/batches", json={"folder": "scans", "doc_type": "receipt"}).status_code == 202
    (root / "scans" / "ok.png").unlink()
    (root / "scans").rmdir()
    os.symlink(outside, root / "scans")

    assert run_batch(_job(client), held[0]) == "failed"
    batch = client.get(f"/v1/batches/{held[0]}").json()
    assert batch["status"] == "failed" and batch["error"]["code"] == "invalid_folder"
    assert _counts(client) == (0, 1)


def test_symlinked_files_leading_outside_are_skipped(client, root, outside, make_png):
    (root / "scans").mkdir()
    (root / "scans" / "ok.png").write_bytes(make_png(5))
    os.symlink(outside / "licence.png", root / "scans" / "escape.png")
    batch = _batch(client, folder="scans")
    assert (batch["total_files"], batch["created"]) == (1, 1)


def test_a_fifo_in_the_folder_is_refused_with_a_reason_and_the_walk_goes_on(client, root, make_png):
    _fill(root, make_png)
    os.mkfifo(root / "scans" / "b2.png")  # read like a file, it would block the walk for good
    batch = _batch(client, folder="scans")
    assert batch["status"] == "done"
    assert _tally(batch) == (6, 3, 1, 2)
    assert batch["refused_reasons"] == {"not_a_regular_file": 1, "unsupported_type": 1}


def test_a_file_swapped_for_a_link_outside_between_check_and_read_is_refused(
    client, root, outside, make_png, monkeypatch
):
    _fill(root, make_png)
    from bayou.intake import batches as walking

    real_take = walking.take_file

    def swapped_after_the_check(session, blobs, path, **kwargs):
        # the walk checked b.png inside the root; by the time it is read, it leads to the outside licence
        if path.name == "b.png":
            path.unlink()
            path.symlink_to(outside / "licence.png")
        return real_take(session, blobs, path, **kwargs)

    monkeypatch.setattr(walking, "take_file", swapped_after_the_check)
    batch = _batch(client, folder="scans")
    assert _tally(batch) == (5, 2, 1, 2)
    assert batch["refused_reasons"] == {"file_changed": 1, "unsupported_type": 1}
    listed = client.get("/v1/documents").json()["items"]
    assert sorted(item["filename"] for item in listed) == ["a.png", "c.png"]


def test_missing_folder_is_404_and_unknown_type_is_422(client, root):
    response = client.post("/v1/batches", json={"folder": "nothing-here", "doc_type": "receipt"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "folder_not_found"
    (root / "scans").mkdir()
    response = client.post("/v1/batches", json={"folder": "scans", "doc_type": "passport"})
    assert response.status_code == 422 and response.json()["error"]["code"] == "unknown_doc_type"
    assert _counts(client) == (0, 0)


def test_a_folder_name_the_file_system_refuses_is_422_not_a_crash(client, root):
    # found by schemathesis: a name longer than the file system allows (ENAMETOOLONG)
    response = client.post("/v1/batches", json={"folder": "0" * 1000, "doc_type": "receipt"})
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_folder"
    assert client.get("/healthz").status_code == 200
    assert _counts(client) == (0, 0)


def test_files_over_the_limits_are_refused_not_stored(make_api_client, root, make_png):
    client = make_api_client(max_pixels=1000, max_upload_mb=1, app_kwargs={"batch_root": root})
    (root / "scans").mkdir()
    (root / "scans" / "big.png").write_bytes(make_png(6, size=(64, 64)))
    (root / "scans" / "empty.png").write_bytes(b"")
    (root / "scans" / "huge.png").write_bytes(make_png(7) + b"\0" * (1 << 20))
    batch = _batch(client, folder="scans")
    assert _tally(batch) == (3, 0, 0, 3)
    assert batch["refused_reasons"] == {"empty_file": 1, "too_large": 1, "too_many_pixels": 1}
    assert list(client.app.state.bayou.blobs.iter_hashes()) == []


def test_a_walk_cut_short_resumes_with_the_right_counts(make_api_client, root, make_png, monkeypatch):
    from bayou.intake import batches as walking

    client = make_api_client(app_kwargs={"batch_root": root})
    held = hold_walks(client)
    _fill(root, make_png)
    client.post("/v1/batches", json={"folder": "scans", "doc_type": "receipt"})
    real_take = walking.take_file
    taken: list[object] = []

    def dies_at_the_third_file(*args, **kwargs):
        if len(taken) == 2:
            raise SystemExit("the worker was killed")
        taken.append(real_take(*args, **kwargs))
        return taken[-1]

    monkeypatch.setattr(walking, "take_file", dies_at_the_third_file)
    with pytest.raises(SystemExit):
        # a clock 10 s on at each look: progress reaches the row after every file
        run_batch(_job(client), held[0], clock=itertools.count(step=10).__next__)
    progress = client.get(f"/v1/batches/{held[0]}").json()
    assert progress["status"] == "running" and _tally(progress) == (2, 2, 0, 0)
    enqueued = client.app.state.bayou.enqueue.calls
    assert len(enqueued) == 2

    monkeypatch.setattr(walking, "take_file", real_take)
    # the message that started it is stale now: the walk resumes from its checkpoint, the last file counted
    assert run_batch(_job(client), held[0]) is None
    with client.app.state.bayou.sessions() as session:
        row = session.get(Batch, held[0])
        checkpoint, cursor = row.checkpoint, row.cursor
    assert (checkpoint, cursor) == (2, "b.png")
    assert run_batch(_job(client), held[0], checkpoint) == "done"
    batch = client.get(f"/v1/batches/{held[0]}").json()
    assert _tally(batch) == (5, 3, 1, 1) and batch["statuses"] == {"queued": 3}
    assert _counts(client) == (3, 1)
    # the first walk's documents are not sent twice (their messages are queued; the sweep covers a lost one)
    assert len(enqueued) == 3 and len({call[0] for call in enqueued}) == 3

    # a message delivered again after the batch finished changes nothing
    assert run_batch(_job(client), held[0], checkpoint) is None
    assert client.get(f"/v1/batches/{held[0]}").json() == batch


def test_the_embedded_worker_walks_a_batch_to_done(make_api_client, embedded_worker, root, make_png):
    # the workers' enqueue: the route sends the walk to the worker over the embedded broker; the API's
    # data dir is the worker's (both tmp_path/data)
    client = make_api_client(app_kwargs={"batch_root": root, "enqueue": workers_enqueue})
    assert client.app.state.bayou.settings.data_dir == embedded_worker.settings.data_dir
    _fill(root, make_png)
    response = client.post("/v1/batches", json={"folder": "scans", "doc_type": "receipt"})
    assert response.status_code == 202 and response.json()["status"] == "running"

    batch_id = response.json()["id"]
    deadline = time.monotonic() + 60
    while (batch := client.get(f"/v1/batches/{batch_id}").json())["status"] == "running":
        assert time.monotonic() < deadline, batch
        time.sleep(0.2)
    assert batch["status"] == "done"
    assert _tally(batch) == (5, 3, 1, 1) and batch["refused_reasons"] == {"unsupported_type": 1}
    assert sum(batch["statuses"].values()) == 3
    # the worker enqueued the documents: it takes them from the queue (rasterising) in turn
    while "queued" in (statuses := client.get(f"/v1/batches/{batch_id}").json()["statuses"]):
        assert time.monotonic() < deadline + 60, statuses
        time.sleep(0.2)


def test_the_embedded_worker_runs_other_tasks_between_the_slices_of_a_walk(
    make_api_client, embedded_worker, root, make_png, monkeypatch
):
    from celery.signals import task_prerun

    from bayou.intake import batches as walking
    from workers.names import INGEST_BATCH_TASK, RASTERIZE_TASK

    # a slice of one file: the walk yields after each (the worker runs in this process, a thread of it)
    monkeypatch.setattr(walking, "WALK_SLICE_S", 0.0)
    monkeypatch.setattr(walking, "SLICE_PER_LISTING", 0)
    # the cpu queue's order is the point: no extraction follows the rasterising (nor holds the worker)
    monkeypatch.setattr("workers.tasks.send_extract", lambda *args, **kwargs: None)
    ran: list[tuple[str, tuple]] = []

    def record(task=None, args=None, **_) -> None:
        ran.append((task.name, tuple(args or ())))

    client = make_api_client(app_kwargs={"batch_root": root, "enqueue": workers_enqueue})
    (root / "scans").mkdir()
    for index in range(3):
        (root / "scans" / f"{index}.png").write_bytes(make_png(10 + index))
    task_prerun.connect(record, weak=False)
    try:
        batch_id = client.post("/v1/batches", json={"folder": "scans", "doc_type": "receipt"}).json()["id"]
        deadline = time.monotonic() + 60
        while (batch := client.get(f"/v1/batches/{batch_id}").json())["status"] == "running":
            assert time.monotonic() < deadline, batch
            time.sleep(0.1)
    finally:
        task_prerun.disconnect(record)

    assert batch["status"] == "done" and _tally(batch) == (3, 3, 0, 0)
    walks = [index for index, (name, _) in enumerate(ran) if name == INGEST_BATCH_TASK]
    # the messages carry checkpoints, never file names (Flower shows a task's arguments)
    assert [ran[index][1] for index in walks] == [(batch_id,), (batch_id, 1), (batch_id, 2)]
    # the documents the first two slices queued were rasterised before the walk went on
    between = [name for name, _ in ran[walks[0] : walks[-1]]]
    assert between.count(RASTERIZE_TASK) == 2
