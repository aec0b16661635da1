"""POST /v1/batches: a folder under the batch root, each supported file enqueued once, nothing outside
the root ever read."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import func, select

from storage.models import Batch, Document


@pytest.fixture
def root(tmp_path):
    path = tmp_path / "inbox"
    path.mkdir()
    return path


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


def test_batch_enqueues_each_supported_file_once(client, root, make_png):
    _fill(root, make_png)
    response = client.post("/v1/batches", json={"folder": "scans", "doc_type": "receipt"})
    assert response.status_code == 201, response.text
    batch = response.json()
    assert (batch["total_files"], batch["created"], batch["duplicates"], batch["refused"]) == (5, 3, 1, 1)
    assert batch["statuses"] == {"queued": 3}
    calls = client.app.state.bayou.enqueue.calls
    assert len(calls) == 3 and {call[1:] for call in calls} == {("h2ovl-800m", "receipt")}

    again = client.post("/v1/batches", json={"folder": "scans/", "doc_type": "receipt"}).json()
    assert (again["created"], again["duplicates"]) == (0, 4)
    assert len(calls) == 3
    assert client.get(f"/v1/batches/{batch['id']}").json() == batch
    listed = client.get("/v1/documents").json()["items"]
    assert sorted(item["filename"] for item in listed) == ["a.png", "b.png", "c.png"]


def test_non_recursive_batch_stays_in_the_folder(client, root, make_png):
    _fill(root, make_png)
    batch = client.post(
        "/v1/batches", json={"folder": "scans", "doc_type": "check", "recursive": False}
    ).json()
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


def test_symlinked_files_leading_outside_are_skipped(client, root, outside, make_png):
    (root / "scans").mkdir()
    (root / "scans" / "ok.png").write_bytes(make_png(5))
    os.symlink(outside / "licence.png", root / "scans" / "escape.png")
    batch = client.post("/v1/batches", json={"folder": "scans", "doc_type": "receipt"}).json()
    assert (batch["total_files"], batch["created"]) == (1, 1)


def test_missing_folder_is_404_and_unknown_type_is_422(client, root):
    response = client.post("/v1/batches", json={"folder": "nothing-here", "doc_type": "receipt"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "folder_not_found"
    (root / "scans").mkdir()
    response = client.post("/v1/batches", json={"folder": "scans", "doc_type": "passport"})
    assert response.status_code == 422 and response.json()["error"]["code"] == "unknown_doc_type"
    assert _counts(client) == (0, 0)


def test_files_over_the_limits_are_refused_not_stored(make_api_client, root, make_png):
    client = make_api_client(max_pixels=1000, app_kwargs={"batch_root": root})
    (root / "scans").mkdir()
    (root / "scans" / "big.png").write_bytes(make_png(6, size=(64, 64)))
    (root / "scans" / "empty.png").write_bytes(b"")
    batch = client.post("/v1/batches", json={"folder": "scans", "doc_type": "receipt"}).json()
    assert (batch["total_files"], batch["created"], batch["refused"]) == (2, 0, 2)
    assert list(client.app.state.bayou.blobs.iter_hashes()) == []
