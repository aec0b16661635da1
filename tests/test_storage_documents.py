"""Storage operations on both backends: dedupe, no half-done writes, idempotent runs, lifecycle,
deletion, pagination, audit."""

from __future__ import annotations

import io
import os
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from storage import documents as ops
from storage.blobs import BlobStore
from storage.errors import IllegalTransition, InvalidCursor, NotFound
from storage.models import (
    AuditEntry,
    Document,
    DocumentStatus,
    ExtractionRun,
    Page,
    Review,
    ReviewAction,
    Score,
)
from storage.references import cleanup_orphan_blobs

S = DocumentStatus


def _create(
    session: Session, blobs: BlobStore, data: bytes = b"%PDF receipt", doc_type: str = "receipt", **kw: object
) -> tuple[Document, bool]:
    return ops.create_document(
        session,
        blobs,
        stream_or_path=io.BytesIO(data),
        filename=kw.pop("filename", "scan.pdf"),
        media_type="application/pdf",
        doc_type=doc_type,
        **kw,
    )


def _count(session: Session, model: type, *where: object) -> int:
    return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def _run(**changes: object) -> ops.NewRun:
    fields: dict[str, object] = {
        "model_id": "h2oai/h2ovl-mississippi-800m",
        "prompt_version": "p1",
        "schema_version": "s1",
        "raw_output": '{"total": "1.00"}',
        "valid": True,
        "data": {"total": "1.00"},
    }
    return ops.NewRun(**(fields | changes))  # type: ignore[arg-type]


def _force_status(session: Session, document_id: str, status: DocumentStatus) -> None:
    session.execute(update(Document).where(Document.id == document_id).values(status=status.value))
    session.commit()


def _blob_files(blobs: BlobStore) -> set[str]:
    return set(blobs.iter_hashes())


# --- create_document ---------------------------------------------------------------------------------


def test_same_bytes_type_and_model_is_one_document(db_session: Session, blob_store: BlobStore) -> None:
    first, created = _create(db_session, blob_store, filename="a.pdf")
    again, created_again = _create(db_session, blob_store, filename="renamed.pdf")

    assert created and not created_again
    assert again.id == first.id
    assert first.id.startswith("doc_") and len(first.id) == 30
    assert first.status == "queued" and first.pages is None and first.attempts == 0
    assert first.size_bytes == len(b"%PDF receipt")
    assert blob_store.exists(first.content_sha256)
    assert _count(db_session, Document) == 1


def test_other_type_or_model_is_another_document(db_session: Session, blob_store: BlobStore) -> None:
    default, _ = _create(db_session, blob_store)
    small, created_small = _create(db_session, blob_store, model="h2ovl-800m")
    as_check, created_check = _create(db_session, blob_store, doc_type="check")
    small_again, created_small_again = _create(db_session, blob_store, model="h2ovl-800m")

    assert created_small and created_check and not created_small_again
    assert len({default.id, small.id, as_check.id}) == 3
    assert small_again.id == small.id
    assert default.model is None and small.model == "h2ovl-800m"
    assert _blob_files(blob_store) == {default.content_sha256}, "one content, one blob"


def test_filename_is_a_sanitised_display_name(db_session: Session, blob_store: BlobStore) -> None:
    document, _ = _create(db_session, blob_store, filename="C:\\Users\\me\\..\\scan\u202egpj.exe\x00")
    assert document.filename == "scan gpj.exe"


def test_a_failure_after_the_blob_write_leaves_no_row_and_no_blob(
    db_session: Session, blob_store: BlobStore
) -> None:
    blob_written: list[bool] = []

    def fail_on_insert(session: Session, *_: object) -> None:
        blob_written.extend(blob_store.exists(sha) for sha in blob_store.iter_hashes())
        raise RuntimeError("database went away")

    event.listen(db_session, "before_flush", fail_on_insert)
    with pytest.raises(RuntimeError, match="went away"):
        _create(db_session, blob_store)
    event.remove(db_session, "before_flush", fail_on_insert)

    assert blob_written == [True], "the failure must come after the blob was in place"
    assert _count(db_session, Document) == 0
    assert _blob_files(blob_store) == set()
    assert list((blob_store.root / ".tmp").iterdir()) == []


def test_a_failure_keeps_a_blob_that_another_document_references(
    db_session: Session, blob_store: BlobStore
) -> None:
    kept, _ = _create(db_session, blob_store, doc_type="receipt")

    def fail_on_insert(*_: object) -> None:
        raise RuntimeError("boom")

    event.listen(db_session, "before_flush", fail_on_insert)
    with pytest.raises(RuntimeError):
        _create(db_session, blob_store, doc_type="check")
    event.remove(db_session, "before_flush", fail_on_insert)

    assert _count(db_session, Document) == 1
    assert _blob_files(blob_store) == {kept.content_sha256}


def test_concurrent_uploads_of_the_same_content_make_one_document(
    db_sessions: sessionmaker[Session], blob_store: BlobStore
) -> None:
    results: list[tuple[str, bool]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def upload() -> None:
        try:
            with db_sessions() as session:
                barrier.wait()
                document, created = _create(session, blob_store, data=b"one scan, many clicks")
                results.append((document.id, created))
        except BaseException as exc:  # asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=upload) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len({document_id for document_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert len(_blob_files(blob_store)) == 1


# --- lifecycle -----------------------------------------------------------------------------------------

# written out from the contract, not derived from the implementation's table
LEGAL = {
    (S.QUEUED, S.PROCESSING),
    (S.QUEUED, S.FAILED),
    (S.PROCESSING, S.PROCESSING),
    (S.PROCESSING, S.QUEUED),
    (S.PROCESSING, S.DONE),
    (S.PROCESSING, S.NEEDS_REVIEW),
    (S.PROCESSING, S.FAILED),
    (S.DONE, S.APPROVED),
    (S.DONE, S.REJECTED),
    (S.NEEDS_REVIEW, S.APPROVED),
    (S.NEEDS_REVIEW, S.REJECTED),
    (S.FAILED, S.QUEUED),
}


def test_every_status_transition_is_allowed_or_refused_as_specified(
    db_session: Session, blob_store: BlobStore
) -> None:
    document, _ = _create(db_session, blob_store)
    for source in S:
        for target in S:
            _force_status(db_session, document.id, source)
            if (source, target) in LEGAL:
                assert ops.set_status(db_session, document.id, target).status == target
            else:
                with pytest.raises(IllegalTransition):
                    ops.set_status(db_session, document.id, target)
                assert ops.get_document_fresh(db_session, document.id).status == source


def test_processing_counts_attempts_and_failed_keeps_its_error(
    db_session: Session, blob_store: BlobStore
) -> None:
    document, _ = _create(db_session, blob_store)
    before = document.updated_at

    ops.set_status(db_session, document.id, S.PROCESSING)
    failed = ops.set_status(
        db_session, document.id, S.FAILED, error_code="corrupt_file", error_message="truncated PDF"
    )
    assert (failed.status, failed.attempts, failed.error_code) == ("failed", 1, "corrupt_file")
    assert failed.updated_at > before
    assert failed.updated_at.tzinfo is not None

    ops.set_status(db_session, document.id, S.QUEUED)
    retried = ops.set_status(db_session, document.id, S.PROCESSING)
    assert (retried.attempts, retried.error_code, retried.error_message) == (2, None, None)


def test_status_of_an_unknown_document(db_session: Session) -> None:
    with pytest.raises(NotFound):
        ops.set_status(db_session, "doc_missing", S.PROCESSING)


def test_a_review_sets_the_status_and_is_recorded(db_session: Session, blob_store: BlobStore) -> None:
    document, _ = _create(db_session, blob_store)
    with pytest.raises(IllegalTransition):
        ops.record_review(db_session, document.id, actor="rev@example.com", action=ReviewAction.APPROVE)
    assert _count(db_session, Review) == 0

    _force_status(db_session, document.id, S.NEEDS_REVIEW)
    review = ops.record_review(
        db_session, document.id, actor="rev@example.com", action=ReviewAction.REJECT, reason="blurred"
    )
    assert review.id is not None and review.action == "reject"
    assert ops.get_document_fresh(db_session, document.id).status == "rejected"


# --- runs --------------------------------------------------------------------------------------------


def test_store_run_twice_with_one_key_stores_one_run(db_session: Session, blob_store: BlobStore) -> None:
    document, _ = _create(db_session, blob_store)
    ops.set_status(db_session, document.id, S.PROCESSING)

    first, created = ops.store_run(db_session, document.id, "task-1", _run(), status=S.DONE)
    second, created_again = ops.store_run(db_session, document.id, "task-1", _run(raw_output="different"))

    assert created and not created_again
    assert second.id == first.id and second.raw_output == '{"total": "1.00"}'
    assert _count(db_session, ExtractionRun) == 1
    assert ops.get_document_fresh(db_session, document.id).status == "done"

    _force_status(db_session, document.id, S.PROCESSING)
    _, created_other = ops.store_run(
        db_session, document.id, "task-2", _run(valid=False), status=S.NEEDS_REVIEW
    )
    assert created_other and _count(db_session, ExtractionRun) == 2


def test_store_run_with_an_illegal_status_stores_nothing(db_session: Session, blob_store: BlobStore) -> None:
    document, _ = _create(db_session, blob_store)
    with pytest.raises(IllegalTransition):
        ops.store_run(db_session, document.id, "task-1", _run(), status=S.DONE)  # still queued
    assert _count(db_session, ExtractionRun) == 0


def test_concurrent_redeliveries_store_one_run(
    db_sessions: sessionmaker[Session], blob_store: BlobStore
) -> None:
    with db_sessions() as session:
        document, _ = _create(session, blob_store)
        ops.set_status(session, document.id, S.PROCESSING)
    results: list[tuple[int, bool]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def deliver() -> None:
        try:
            with db_sessions() as session:
                barrier.wait()
                run, created = ops.store_run(session, document.id, "task-1", _run(), status=S.DONE)
                results.append((run.id, created))
        except BaseException as exc:  # asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len({run_id for run_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    with db_sessions() as session:
        assert _count(session, ExtractionRun) == 1
        assert ops.get_document(session, document.id).status == "done"


# --- pages, deletion, orphans -----------------------------------------------------------------------------


def _pages(*contents: bytes) -> list[ops.PageImage]:
    return [ops.PageImage(data=content, width=850, height=1100) for content in contents]


def test_store_pages_numbers_them_and_replaces_an_earlier_attempt(
    db_session: Session, blob_store: BlobStore
) -> None:
    document, _ = _create(db_session, blob_store)
    ops.store_pages(db_session, blob_store, document.id, _pages(b"png-1", b"png-2", b"png-3"))
    rows = ops.store_pages(db_session, blob_store, document.id, _pages(b"png-1", b"png-2b"))

    assert [row.number for row in rows] == [1, 2]
    assert ops.get_document_fresh(db_session, document.id).pages == 2
    stored = {
        row.blob_sha256 for row in db_session.scalars(select(Page).where(Page.document_id == document.id))
    }
    assert _blob_files(blob_store) == stored | {document.content_sha256}, "replaced page blobs are removed"


def test_delete_removes_rows_and_blobs_no_one_else_uses(db_session: Session, blob_store: BlobStore) -> None:
    other, _ = _create(db_session, blob_store, data=b"other upload")
    ops.store_pages(db_session, blob_store, other.id, _pages(b"blank page"))
    doomed, _ = _create(db_session, blob_store, data=b"doomed upload")
    ops.store_pages(db_session, blob_store, doomed.id, _pages(b"blank page", b"doomed page"))
    _force_status(db_session, doomed.id, S.PROCESSING)
    run, _ = ops.store_run(db_session, doomed.id, "task-1", _run(), status=S.DONE)
    db_session.add(
        Score(run_id=run.id, ground_truth_source="reviewed", ted_accuracy=1.0, f1=1.0, perfect_match=True)
    )
    db_session.commit()
    ops.record_review(db_session, doomed.id, actor="rev@example.com", action=ReviewAction.APPROVE)
    ops.record_audit(db_session, actor="rev@example.com", action="document.delete", document_id=doomed.id)
    shared_page = next(
        p.blob_sha256 for p in db_session.scalars(select(Page).where(Page.document_id == other.id))
    )

    ops.delete_document(db_session, blob_store, doomed.id)

    with pytest.raises(NotFound):
        ops.get_document(db_session, doomed.id)
    assert _count(db_session, Page, Page.document_id == doomed.id) == 0
    assert _count(db_session, ExtractionRun) == 0
    assert _count(db_session, Score) == 0
    assert _count(db_session, Review) == 0
    assert _count(db_session, AuditEntry, AuditEntry.document_id == doomed.id) == 1, "the trail outlives it"
    assert _blob_files(blob_store) == {other.content_sha256, shared_page}
    with pytest.raises(NotFound):
        ops.delete_document(db_session, blob_store, doomed.id)


def test_cleanup_removes_old_unreferenced_blobs_only(db_session: Session, blob_store: BlobStore) -> None:
    document, _ = _create(db_session, blob_store)
    old_orphan = blob_store.put_bytes(b"left by a crash").sha256
    young_orphan = blob_store.put_bytes(b"being referenced right now").sha256
    for sha in (document.content_sha256, old_orphan):
        os.utime(blob_store.path(sha), (1, 1))

    assert cleanup_orphan_blobs(db_session, blob_store, min_age_s=3600) == [old_orphan]
    assert _blob_files(blob_store) == {document.content_sha256, young_orphan}


# --- listing -----------------------------------------------------------------------------------------


def _seed_documents(session: Session, count: int) -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    session.add_all(
        Document(
            id=f"doc_{i:04d}",
            content_sha256=f"{i:064x}",
            filename=f"{i}.png",
            media_type="image/png",
            size_bytes=1,
            doc_type="receipt" if i % 2 else "check",
            # three documents per instant, so the id must break ties
            created_at=start + timedelta(microseconds=i // 3),
            updated_at=start,
        )
        for i in range(count)
    )
    session.commit()


def test_pages_of_50_walk_120_documents_newest_first(db_session: Session) -> None:
    _seed_documents(db_session, 120)
    sizes: list[int] = []
    seen: list[Document] = []
    cursor = None
    while True:
        page = ops.list_documents(db_session, limit=50, cursor=cursor)
        sizes.append(len(page.items))
        seen.extend(page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor

    assert sizes == [50, 50, 20]
    keys = [(d.created_at, d.id) for d in seen]
    assert len(set(keys)) == 120
    assert keys == sorted(keys, reverse=True)
    assert seen[0].id == "doc_0119"


def test_filters_and_cursors(db_session: Session) -> None:
    _seed_documents(db_session, 30)
    receipts = ops.list_documents(db_session, ops.DocumentFilter(doc_type="receipt"), limit=10)
    assert len(receipts.items) == 10 and all(d.doc_type == "receipt" for d in receipts.items)
    rest = ops.list_documents(
        db_session, ops.DocumentFilter(doc_type="receipt"), limit=10, cursor=receipts.next_cursor
    )
    assert len(rest.items) == 5 and rest.next_cursor is None
    assert ops.list_documents(db_session, ops.DocumentFilter(status=S.DONE)).items == []

    for bad in ("not base64!", "bm90IGpzb24", "WzEsMl0"):
        with pytest.raises(InvalidCursor):
            ops.list_documents(db_session, cursor=bad)
    with pytest.raises(ValueError):
        ops.list_documents(db_session, limit=501)


# --- audit -------------------------------------------------------------------------------------------


def test_audit_detail_takes_names_not_nested_values(db_session: Session) -> None:
    entry = ops.record_audit(
        db_session,
        actor="admin@example.com",
        action="review.approve",
        document_id="doc_x",
        detail={"changed_fields": ["/total", "/date"], "count": 2},
    )
    assert entry.id is not None and entry.created_at.tzinfo is not None

    with pytest.raises(TypeError):
        ops.record_audit(
            db_session, actor="a", action="review.approve", detail={"data": {"family_name": "Doe"}}
        )
    assert _count(db_session, AuditEntry) == 1


def test_a_failed_statement_names_no_stored_values(any_db_url: str) -> None:
    # errors reach logs and a document's error message; the values may be a licence holder's data
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    from storage.db import make_engine

    engine = make_engine(any_db_url)
    try:
        with engine.begin() as connection, pytest.raises(SQLAlchemyError) as caught:
            connection.execute(
                text("INSERT INTO no_such_table (name) VALUES (:name)"), {"name": "JANE Q DOE"}
            )
    finally:
        engine.dispose()
    assert "JANE Q DOE" not in str(caught.value)
