"""The storage operations the service needs. Each takes an injected Session and is one transaction:
it commits on success and leaves nothing behind on failure (no row without its blob, no blob without a
row that references it)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import Select, and_, delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from extractor.page_reading import PageReading
from storage.blobs import BlobStore, StagedBlob
from storage.errors import NotFound
from storage.filenames import sanitize_filename
from storage.ids import new_id
from storage.lifecycle import transition
from storage.models import AuditEntry, Document, DocumentStatus, ExtractionRun, Page, Review, ReviewAction
from storage.pagination import decode_cursor, encode_cursor
from storage.references import discard_if_unreferenced

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500

_REVIEW_TARGET = {ReviewAction.APPROVE: DocumentStatus.APPROVED, ReviewAction.REJECT: DocumentStatus.REJECTED}


@dataclass(frozen=True)
class NewRun:
    """One extraction's outcome, as a worker reports it."""

    model_id: str
    prompt_version: str
    schema_version: str
    raw_output: str
    valid: bool
    data: Any = None
    model_revision: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    confidence: dict[str, float] = field(default_factory=dict)
    locations: dict[str, Any] | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    prompt_tokens: int | None = None
    generated_tokens: int | None = None
    tiles: int | None = None
    tiles_per_page: list[int] | None = None


@dataclass(frozen=True)
class PageImage:
    """A rasterised page: its encoded image bytes (PNG) and pixel size."""

    data: bytes
    width: int
    height: int
    reading: PageReading = PageReading()  # what the CPU stage read on it, stored in the page's row


@dataclass(frozen=True)
class DocumentFilter:
    status: DocumentStatus | None = None
    doc_type: str | None = None
    batch_id: str | None = None


@dataclass(frozen=True)
class DocumentPage:
    items: list[Document]
    next_cursor: str | None


# --- documents -------------------------------------------------------------------------------------


def create_document(
    session: Session,
    blobs: BlobStore,
    *,
    stream_or_path: BinaryIO | str | Path,
    filename: str | None,
    media_type: str,
    doc_type: str,
    model: str | None = None,
    callback_url: str | None = None,
    batch_id: str | None = None,
    max_bytes: int | None = None,
) -> tuple[Document, bool]:
    """Stores the upload's bytes, then its row. The same bytes, doc_type and model again give the
    existing document and `created` False."""
    with blobs.stage(stream_or_path, max_bytes=max_bytes) as staged:
        existing = find_duplicate(session, staged.sha256, doc_type, model)
        if existing is not None:
            return existing, False
        row = Document(
            id=new_id("doc"),
            content_sha256=staged.sha256,
            filename=sanitize_filename(filename),
            media_type=media_type,
            size_bytes=staged.size,
            doc_type=doc_type,
            model=model,
            status=DocumentStatus.QUEUED.value,
            callback_url=callback_url,
            batch_id=batch_id,
        )
        return _place_blob_and_insert(session, blobs, staged, row)


def _place_blob_and_insert(
    session: Session, blobs: BlobStore, staged: StagedBlob, row: Document
) -> tuple[Document, bool]:
    try:
        # held shared until the row is committed, so no cleanup deletes the blob in between
        with blobs.lock(staged.sha256):
            staged.commit()
            session.add(row)
            session.commit()
            return row, True
    except IntegrityError:
        session.rollback()
        # a concurrent upload of the same content won the unique constraint: it is the document
        existing = find_duplicate(session, row.content_sha256, row.doc_type, row.model)
        if existing is not None:
            return existing, False
        discard_if_unreferenced(session, blobs, [row.content_sha256])
        raise
    except BaseException:
        session.rollback()
        discard_if_unreferenced(session, blobs, [row.content_sha256])
        raise


def find_duplicate(session: Session, sha256: str, doc_type: str, model: str | None) -> Document | None:
    return session.scalar(
        select(Document).where(
            Document.content_sha256 == sha256,
            Document.doc_type == doc_type,
            Document.model_key == (model or ""),
        )
    )


def get_document(session: Session, document_id: str) -> Document:
    document = session.get(Document, document_id)
    if document is None:
        raise NotFound(f"no document {document_id}")
    return document


def set_status(
    session: Session,
    document_id: str,
    status: DocumentStatus,
    *,
    error_code: str | None = None,
    error_message: str | None = None,
) -> Document:
    """Moves a document along its lifecycle (`storage.lifecycle.ALLOWED_TRANSITIONS`); an illegal move
    raises `IllegalTransition`. Entering `processing` counts an attempt; `failed` records the error."""
    try:
        transition(session, document_id, status, error_code=error_code, error_message=error_message)
        document = get_document_fresh(session, document_id)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return document


def get_document_fresh(session: Session, document_id: str) -> Document:
    """The document as the database has it now, even if this session holds an older copy."""
    document = session.get(Document, document_id, populate_existing=True)
    if document is None:
        raise NotFound(f"no document {document_id}")
    return document


def record_review(
    session: Session,
    document_id: str,
    *,
    actor: str,
    action: ReviewAction,
    corrected_data: Any = None,
    reason: str | None = None,
) -> Review:
    """A reviewer's decision and the status it implies, together. Only `done` and `needs_review`
    documents can be reviewed (else `IllegalTransition`)."""
    try:
        transition(session, document_id, _REVIEW_TARGET[ReviewAction(action)])
        review = Review(
            document_id=document_id,
            actor=actor,
            action=ReviewAction(action).value,
            corrected_data=corrected_data,
            reason=reason,
        )
        session.add(review)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return review


def delete_document(session: Session, blobs: BlobStore, document_id: str) -> None:
    """The document, its pages, runs, reviews and scores (by cascade), and every blob of it that no other
    document references. A crash between the commit and the blob removal leaves orphans that
    `storage.references.cleanup_orphan_blobs` removes."""
    try:
        document = get_document(session, document_id)
        hashes = [document.content_sha256, *_page_hashes(session, document_id)]
        session.execute(delete(Document).where(Document.id == document_id))
        session.commit()
    except BaseException:
        session.rollback()
        raise
    discard_if_unreferenced(session, blobs, hashes)


def _page_hashes(session: Session, document_id: str) -> list[str]:
    return list(session.scalars(select(Page.blob_sha256).where(Page.document_id == document_id)))


# --- pages and runs ---------------------------------------------------------------------------------


def store_pages(
    session: Session,
    blobs: BlobStore,
    document_id: str,
    images: Sequence[PageImage],
    *,
    rasterize_ms: float | None = None,
) -> list[Page]:
    """The rasterised pages (numbered from 1), replacing any from an earlier attempt, the page count and
    how long rasterising took."""
    with ExitStack() as stack:
        staged = [stack.enter_context(blobs.stage(io.BytesIO(image.data))) for image in images]
        new_hashes = [blob.sha256 for blob in staged]
        try:
            with blobs.lock_many(new_hashes):
                rows, old_hashes = _replace_page_rows(session, document_id, images, staged)
                get_document(session, document_id).rasterize_ms = rasterize_ms
                session.commit()
        except BaseException:
            session.rollback()
            discard_if_unreferenced(session, blobs, new_hashes)
            raise
    discard_if_unreferenced(session, blobs, set(old_hashes) - set(new_hashes))
    return rows


def _replace_page_rows(
    session: Session, document_id: str, images: Sequence[PageImage], staged: Sequence[StagedBlob]
) -> tuple[list[Page], list[str]]:
    """The new page rows, and the blob hashes of those they replaced (one DELETE ... RETURNING)."""
    document = get_document(session, document_id)
    for blob in staged:
        blob.commit()
    deleted = session.execute(delete(Page).where(Page.document_id == document_id).returning(Page.blob_sha256))
    old_hashes = list(deleted.scalars())
    rows = [
        Page(
            document_id=document_id,
            number=n,
            blob_sha256=blob.sha256,
            width=image.width,
            height=image.height,
            words=image.reading.words,
            barcode=image.reading.barcode,
        )
        for n, (image, blob) in enumerate(zip(images, staged, strict=True), start=1)
    ]
    session.add_all(rows)
    document.pages = len(rows)
    return rows, old_hashes


def store_run(
    session: Session,
    document_id: str,
    idempotency_key: str,
    run: NewRun,
    *,
    status: DocumentStatus | None = None,
) -> tuple[ExtractionRun, bool]:
    """Stores one extraction run, and moves the document to `status` in the same transaction if given.
    A key already stored for the document (a redelivered task) returns that run and `created` False,
    changing nothing."""
    row = ExtractionRun(document_id=document_id, idempotency_key=idempotency_key, **asdict(run))
    try:
        session.add(row)
        # the insert comes first: a stored key (a redelivery, or a concurrent twin) fails on the unique
        # key before the status moves; no lookup beforehand, since a first delivery is the common case
        session.flush()
        if status is not None:
            transition(session, document_id, status)
        session.commit()
    except IntegrityError:
        session.rollback()
        existing = _find_run(session, document_id, idempotency_key)
        if existing is None:
            raise
        return existing, False
    except BaseException:
        session.rollback()
        raise
    return row, True


def _find_run(session: Session, document_id: str, idempotency_key: str) -> ExtractionRun | None:
    return session.scalar(
        select(ExtractionRun).where(
            ExtractionRun.document_id == document_id, ExtractionRun.idempotency_key == idempotency_key
        )
    )


# --- listing ----------------------------------------------------------------------------------------


def list_documents(
    session: Session,
    filters: DocumentFilter | None = None,
    *,
    limit: int = DEFAULT_PAGE_SIZE,
    cursor: str | None = None,
) -> DocumentPage:
    """Newest first, `limit` at a time; pass `next_cursor` back for the next page (None: no more)."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE_SIZE}")
    statement = _filtered(filters or DocumentFilter())
    if cursor is not None:
        created_at, last_id = decode_cursor(cursor)
        statement = statement.where(
            or_(
                Document.created_at < created_at,
                and_(Document.created_at == created_at, Document.id < last_id),
            )
        )
    rows = list(session.scalars(statement.limit(limit + 1)))
    items = rows[:limit]
    more = len(rows) > limit
    return DocumentPage(items, encode_cursor(items[-1].created_at, items[-1].id) if more else None)


def _filtered(filters: DocumentFilter) -> Select[Any]:
    statement = select(Document).order_by(Document.created_at.desc(), Document.id.desc())
    if filters.status is not None:
        statement = statement.where(Document.status == DocumentStatus(filters.status).value)
    if filters.doc_type is not None:
        statement = statement.where(Document.doc_type == filters.doc_type)
    if filters.batch_id is not None:
        statement = statement.where(Document.batch_id == filters.batch_id)
    return statement


# --- audit ------------------------------------------------------------------------------------------

AuditValue = str | int | float | bool | None


def record_audit(
    session: Session,
    *,
    actor: str,
    action: str,
    document_id: str | None = None,
    detail: Mapping[str, AuditValue | list[AuditValue]] | None = None,
) -> AuditEntry:
    """One audit entry. `detail` holds names and counts (e.g. which fields a review changed), never the
    values of personal fields, so nested objects such as extracted data are refused."""
    entry = AuditEntry(actor=actor, action=action, document_id=document_id, detail=_flat_detail(detail or {}))
    try:
        session.add(entry)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return entry


def _flat_detail(detail: Mapping[str, Any]) -> dict[str, Any]:
    scalar = (str, int, float, bool, type(None))
    for key, value in detail.items():
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(item, scalar) for item in items):
            raise TypeError(f"audit detail {key!r}: only scalars or lists of scalars are recorded")
    return dict(detail)
