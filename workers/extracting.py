"""The GPU stage: stored page images to a stored run and a final status, in one transaction per
document. Several documents go through the model in one batched generate."""

from __future__ import annotations

import io
import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bayou.logs import bind_document_id
from extractor.errors import BayouError
from extractor.page_reading import PageReading
from storage.documents import NewRun, store_run
from storage.errors import IllegalTransition, NotFound
from storage.lifecycle import transition
from storage.models import Document, DocumentStatus, Page
from workers.callbacks import schedule_callback
from workers.documents import fail, gave_up, skipped_if_deleted
from workers.outcomes import Outcome
from workers.runtime import Runtime
from workers.telemetry import record_generation, record_outcome

if TYPE_CHECKING:
    from extractor.pipeline import Rasterized
    from extractor.result import Result

log = logging.getLogger(__name__)

S = DocumentStatus
_STARTABLE = frozenset({S.PROCESSING})
NO_PAGES = "no_pages"


@dataclass(frozen=True)
class ExtractJob:
    """One delivery of one document's extraction; the key is the delivered message's id, so a
    redelivery of the same message finds the run it may already have stored."""

    document_id: str
    idempotency_key: str


@dataclass(frozen=True)
class _StoredPage:
    """What the CPU stage stored for a page: its image's blob hash, and what it read there."""

    blob_sha256: str
    reading: PageReading


@dataclass(frozen=True)
class _Started:
    """A document moved to processing for this delivery, with its pages in page order."""

    document: Document
    pages: list[_StoredPage]


@dataclass
class _Ready:
    index: int
    job: ExtractJob
    model: str
    rasterized: Rasterized


def extract_stored(
    runtime: Runtime, document_id: str, *, idempotency_key: str, max_tiles: int | None = None
) -> Outcome:
    return extract_batch(runtime, [ExtractJob(document_id, idempotency_key)], max_tiles=max_tiles)[0]


def extract_batch(runtime: Runtime, jobs: list[ExtractJob], *, max_tiles: int | None = None) -> list[Outcome]:
    """Runs each document's model on its stored pages, one batched generate per model, and stores each
    run with its final status. A redelivery (same key) or a twin delivery (another key, racing) stores
    nothing more: the status move in the run's transaction admits only the first. Errors other than
    the documents' own (GPU memory, database) propagate, leaving every document processing."""
    outcomes: dict[int, Outcome] = {}
    by_model: dict[str, list[_Ready]] = defaultdict(list)
    with runtime.sessions() as session:
        started = _start_attempts(session, jobs)
        for index, job in enumerate(jobs):
            ready = _prepare(session, runtime, index, job, started[index])
            if isinstance(ready, Outcome):
                outcomes[index] = ready
            else:
                by_model[ready.model].append(ready)
        for model, group in by_model.items():
            outcomes.update(_extract_group(session, model, group, max_tiles))
    return [outcomes[index] for index in range(len(jobs))]


def _start_attempts(session: Session, jobs: list[ExtractJob]) -> list[_Started | None]:
    """`workers.documents.start_attempt` for every job of the batch in one transaction, which also reads
    their page rows: a transaction per document was most of a batch's database round trips. Each job's
    move is its own conditional UPDATE, so a twin or a finished document is refused as before; the
    transaction is committed before any blob is read or the model runs."""
    ids = sorted({job.document_id for job in jobs})
    try:
        before = _documents(session, ids)
        moved = [_move_to_processing(session, before.get(job.document_id)) for job in jobs]
        after = _documents(session, ids)  # attempts as the moves left them
        pages = _page_rows(session, ids)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    started: list[_Started | None] = []
    for job, ok in zip(jobs, moved, strict=True):
        document = after.get(job.document_id)
        if not ok or document is None or gave_up(session, document):
            started.append(None)
        else:
            started.append(_Started(document, pages.get(job.document_id, [])))
    return started


def _documents(session: Session, ids: list[str]) -> dict[str, Document]:
    statement = select(Document).where(Document.id.in_(ids)).execution_options(populate_existing=True)
    return {document.id: document for document in session.scalars(statement)}


def _move_to_processing(session: Session, document: Document | None) -> bool:
    if document is None or S(document.status) not in _STARTABLE:
        return False
    try:
        transition(session, document.id, S.PROCESSING)
    except IllegalTransition:  # another delivery moved it since it was read
        return False
    return True


def _page_rows(session: Session, ids: list[str]) -> dict[str, list[_StoredPage]]:
    """Each document's stored pages, in page order."""
    statement = (
        select(Page.document_id, Page.blob_sha256, Page.words, Page.barcode)
        .where(Page.document_id.in_(ids))
        .order_by(Page.document_id, Page.number)
    )
    pages: dict[str, list[_StoredPage]] = defaultdict(list)
    for document_id, sha256, words, barcode in session.execute(statement):
        pages[document_id].append(_StoredPage(sha256, PageReading(words=words, barcode=barcode)))
    return pages


def _prepare(
    session: Session, runtime: Runtime, index: int, job: ExtractJob, started: _Started | None
) -> _Ready | Outcome:
    from bayou.engines import model_name
    from extractor.pipeline import DocumentInput, Rasterized

    if started is None:
        return Outcome.SKIPPED
    document = started.document
    try:
        images = _page_images(runtime, [page.blob_sha256 for page in started.pages])
    except NotFound as error:  # its page blobs went with a delete since the batch started
        return skipped_if_deleted(session, job.document_id, error, "before its extraction; skipped")
    if not images:
        fail(session, job.document_id, NO_PAGES, "the document has no rasterised pages")
        return Outcome.FAILED
    source = DocumentInput(sources=[], doc_type=document.doc_type, name=document.filename)
    readings = [page.reading for page in started.pages]
    rasterized = Rasterized.from_stored(source, images, readings, ms=document.rasterize_ms or 0.0)
    return _Ready(index, job, model_name(document.model, document.doc_type), rasterized)


def _page_images(runtime: Runtime, hashes: list[str]) -> list[Image.Image]:
    images = []
    for sha256 in hashes:
        with runtime.blobs.open(sha256) as handle:
            image = Image.open(io.BytesIO(handle.read()))
            image.load()
        images.append(image.convert("RGB"))
    return images


def _extract_group(
    session: Session, model: str, group: list[_Ready], max_tiles: int | None
) -> dict[int, Outcome]:
    from bayou.engines import extractor_for, get_engine
    from bayou.settings import get_settings

    try:
        settings = get_settings()
        extractor = extractor_for(get_engine(model, settings), settings, max_tiles=max_tiles)
    except BayouError as error:  # a model that cannot be loaded: not the documents' fault, but final
        for ready in group:
            fail(session, ready.job.document_id, error.code, error.message)
        return {ready.index: Outcome.FAILED for ready in group}
    results = extractor.extract_rasterized([ready.rasterized for ready in group])
    return {
        ready.index: _store(session, ready.job, result) for ready, result in zip(group, results, strict=True)
    }


def _store(session: Session, job: ExtractJob, result: Result) -> Outcome:
    from extractor.pipeline import review_reasons

    bind_document_id(job.document_id)  # a batch's lines from here on are about this document
    record_generation(result)
    if result.error is not None:
        if fail(session, job.document_id, result.error["code"], result.error["message"]):
            record_outcome(result.model, Outcome.FAILED.value)
        return Outcome.FAILED
    reasons = review_reasons(result)
    status = S.NEEDS_REVIEW if reasons else S.DONE
    try:
        _, created = store_run(session, job.document_id, job.idempotency_key, new_run(result), status=status)
    except IllegalTransition:
        log.info("document %s was finished by another delivery; this run is dropped", job.document_id)
        return Outcome.SKIPPED
    except (NotFound, IntegrityError) as error:
        # the run's row cannot refer to a deleted document; the batch's other documents go on
        return skipped_if_deleted(
            session, job.document_id, error, "during its extraction; this run is dropped"
        )
    if not created:
        return Outcome.SKIPPED
    record_outcome(result.model, status.value)
    schedule_callback(session, job.document_id)
    log.info(
        "document %s is %s%s",
        job.document_id,
        status.value,
        f" ({len(reasons)} review reasons)" if reasons else "",
    )
    return Outcome(status.value)


def new_run(result: Result) -> NewRun:
    return NewRun(
        model_id=result.model,
        model_revision=result.model_revision,
        prompt_version=result.prompt_version or "",
        schema_version=result.schema_version or "",
        raw_output=result.raw_output,
        valid=result.valid,
        data=result.data,
        errors=result.errors,
        checks=result.checks,
        confidence=result.confidence,
        locations=result.locations or None,
        timings_ms=result.timings_ms,
        prompt_tokens=result.tokens.get("prompt"),
        generated_tokens=result.tokens.get("generated"),
        tiles=result.tiles,
        tiles_per_page=result.tiles_per_page or None,
    )
