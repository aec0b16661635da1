"""A document deleted (DELETE /v1/documents/{id}) while its work is queued or under way: its tasks skip
it, and the documents batched with it still finish. Found by a live probe of `bayou serve`: a delete
during extraction failed the whole batch, leaving its other documents stuck in processing."""

from __future__ import annotations

from typing import Any

import pytest

from storage.documents import delete_document, get_document_fresh
from storage.errors import NotFound
from tests.conftest import WorkerDocuments
from workers.extracting import ExtractJob, extract_batch
from workers.outcomes import Outcome
from workers.rasterizing import rasterize_stored
from workers.runtime import Runtime

DOCUMENTS = WorkerDocuments()
FINISHED = {"done", "needs_review"}


def _delete(runtime: Runtime, document_id: str) -> None:
    with runtime.sessions() as session:
        delete_document(session, runtime.blobs, document_id)


def _status(runtime: Runtime, document_id: str) -> str:
    with runtime.sessions() as session:
        return get_document_fresh(session, document_id).status


def test_rasterising_a_deleted_document_is_skipped(worker_runtime: Runtime) -> None:
    document_id = DOCUMENTS.create(worker_runtime, DOCUMENTS.png(64, 64))
    _delete(worker_runtime, document_id)
    assert rasterize_stored(worker_runtime, document_id) is Outcome.SKIPPED


def test_a_document_deleted_while_being_rasterised_is_skipped_and_leaves_no_page_blob(
    worker_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    import extractor.pipeline

    document_id = DOCUMENTS.create(worker_runtime, DOCUMENTS.png(64, 64))
    read = extractor.pipeline.read_pages

    def deleted_meanwhile(*args: Any, **kwargs: Any) -> Any:
        _delete(worker_runtime, document_id)  # the user deletes it while OCR reads the page
        return read(*args, **kwargs)

    monkeypatch.setattr(extractor.pipeline, "read_pages", deleted_meanwhile)
    assert rasterize_stored(worker_runtime, document_id) is Outcome.SKIPPED
    root = worker_runtime.blobs.root
    assert [path for path in root.rglob("*") if path.is_file() and ".locks" not in path.parts] == []


def test_a_document_deleted_during_its_batch_leaves_the_others_finished(
    worker_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from extractor.pipeline import Extractor

    runtime = worker_runtime
    documents = [
        DOCUMENTS.create(runtime, DOCUMENTS.png(448, 448, colour)) for colour in ("white", "grey", "black")
    ]
    for document_id in documents:
        assert rasterize_stored(runtime, document_id) is Outcome.RASTERIZED
    monkeypatch.setenv("BAYOU_MAX_NEW_TOKENS", "512")  # noise either way; fewer tokens, a quicker test

    generate = Extractor.extract_rasterized

    def deleted_meanwhile(self: Extractor, *args: Any, **kwargs: Any) -> Any:
        results = generate(self, *args, **kwargs)
        _delete(runtime, documents[1])  # the user deletes the middle one while the model runs
        return results

    monkeypatch.setattr(Extractor, "extract_rasterized", deleted_meanwhile)
    outcomes = extract_batch(
        runtime, [ExtractJob(document_id, f"task-{n}") for n, document_id in enumerate(documents)]
    )

    assert outcomes[1] is Outcome.SKIPPED
    assert {_status(runtime, documents[0]), _status(runtime, documents[2])} <= FINISHED
    with pytest.raises(NotFound):
        _status(runtime, documents[1])
