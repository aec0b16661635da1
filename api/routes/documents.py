"""/v1/documents: upload, read, list and export, page images, review, delete."""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Annotated, Any

from fastapi import (
    APIRouter,
    BackgroundTasks,
    Depends,
    File,
    Form,
    Path,
    Query,
    Request,
    Response,
    UploadFile,
)
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from sqlalchemy import select

from api import reviewing
from api.deps import BlobsDep, CurrentKey, SessionDep, State, actor
from api.errors import ApiError, refusal
from api.export import csv_chunks, jsonl_lines
from api.schemas import DocumentList, DocumentOut, ReviewIn, error_responses
from api.serialize import document_json, preload
from bayou.engines import model_name
from bayou.intake import Limits, inspect, store_file
from bayou.intake.sending import enqueue_safely
from bayou.logs import bind_document_id
from extractor.errors import InputError
from extractor.registry import MODELS
from extractor.schemas import available_types
from storage.documents import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    DocumentFilter,
    delete_document,
    get_document,
    get_document_fresh,
    list_documents,
    record_audit,
)
from storage.models import DocumentStatus, Page

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/documents", tags=["documents"])

MAX_CALLBACK_URL = 2048


DocumentId = Annotated[str, Path(max_length=64, description="A document id.")]


class ExportFormat(StrEnum):
    JSON = "json"
    JSONL = "jsonl"
    CSV = "csv"


async def _one_file(request: Request) -> None:
    """Refuses several `file` parts: the route's UploadFile would keep the last alone, so a licence's front
    and back sent as two parts would lose the front unseen. The form is the one FastAPI already parsed
    (Starlette keeps it on the request), so nothing is read twice."""
    if len((await request.form()).getlist("file")) > 1:
        raise ApiError(
            422, "one_file_only", "one file per document: send several pages as one PDF or multi-page TIFF"
        )


@router.post(
    "",
    status_code=202,
    dependencies=[Depends(_one_file)],
    response_model=DocumentOut,
    summary="Upload a document",
    response_description="Stored and queued for extraction.",
    responses={
        200: {"model": DocumentOut, "description": "The same bytes, type and model were uploaded before."},
        **error_responses(401, 413, 415, 422, 429),
    },
)
def upload_document(
    state: State,
    session: SessionDep,
    blobs: BlobsDep,
    key: CurrentKey,
    file: Annotated[UploadFile, File(description="A PDF or an image (JPEG, PNG, TIFF, WebP, HEIC, ...).")],
    doc_type: Annotated[
        str,
        # documented as an enum but checked by the route, so an unknown type gets its own error code
        Form(description="The document type.", json_schema_extra={"enum": available_types()}),
    ],
    model: Annotated[
        str | None,
        Form(
            description="Absent: the type's default model.",
            json_schema_extra={"enum": list(MODELS)},
        ),
    ] = None,
    callback_url: Annotated[
        str | None,
        Form(
            description="Called (POST) when the document is finished.",
            json_schema_extra={"pattern": "^https?://", "maxLength": MAX_CALLBACK_URL},
        ),
    ] = None,
) -> Any:
    _check_doc_type(doc_type)
    if model is not None and model not in MODELS:
        raise ApiError(422, "unknown_model", f"model must be one of {', '.join(MODELS)}")
    _check_callback_url(callback_url)
    limits = Limits.from_settings(state.settings)
    if file.size is not None and file.size > limits.max_bytes:
        state.metrics.uploads.labels("too_large").inc()
        raise ApiError(413, "too_large", f"the file is over {state.settings.max_upload_mb} MB")
    try:
        media_type = inspect(file.file, limits)
        # stored under the model that will serve it, so an upload naming the default model and one
        # naming none are the same document
        document, created = store_file(
            session,
            blobs,
            source=file.file,
            filename=file.filename,
            media_type=media_type,
            doc_type=doc_type,
            model=model_name(model, doc_type, state.settings),
            limits=limits,
            callback_url=callback_url,
        )
    except InputError as exc:
        state.metrics.uploads.labels(exc.code).inc()
        log.info("upload refused (%s) for key %s", exc.code, key.name)
        raise refusal(exc) from exc
    state.metrics.uploads.labels("created" if created else "duplicate").inc()
    bind_document_id(document.id)
    if created:
        log.info("document %s stored (%s, %s)", document.id, doc_type, media_type)
        enqueue_safely(state.enqueue, document.id, model=document.model, doc_type=doc_type)
    return JSONResponse(_encoded(document), status_code=202 if created else 200)


def _check_doc_type(doc_type: str) -> None:
    if doc_type not in available_types():
        raise ApiError(422, "unknown_doc_type", f"doc_type must be one of {', '.join(available_types())}")


def _check_callback_url(url: str | None) -> None:
    if url is None:
        return
    if len(url) > MAX_CALLBACK_URL or not url.startswith(("http://", "https://")):
        raise ApiError(422, "invalid_callback_url", "callback_url must be an http(s) URL")


def _encoded(document: Any) -> Any:
    return DocumentOut.model_validate(document_json(document)).model_dump(mode="json")


@router.get(
    "",
    response_model=DocumentList,
    summary="List documents (newest first), or export every match as JSON lines or CSV",
    responses={
        200: {
            "description": "`format=json`: a page of documents. `jsonl`/`csv`: every match, streamed.",
            "content": {"application/x-ndjson": {}, "text/csv": {}},
        },
        **error_responses(401, 422, 429),
    },
)
def list_or_export(
    state: State,
    session: SessionDep,
    _key: CurrentKey,
    status: DocumentStatus | None = None,
    doc_type: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    format: ExportFormat = ExportFormat.JSON,
) -> Any:
    if doc_type is not None:  # as an upload's: a misspelt type is a 422, not an empty list or export
        _check_doc_type(doc_type)
    filters = DocumentFilter(status=status, doc_type=doc_type)
    if format is ExportFormat.JSONL:
        return StreamingResponse(
            jsonl_lines(state.sessions, filters),
            media_type="application/x-ndjson",
            headers={"Content-Disposition": 'attachment; filename="documents.jsonl"'},
        )
    if format is ExportFormat.CSV:
        return StreamingResponse(
            csv_chunks(state.sessions, filters),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="documents.csv"'},
        )
    page = list_documents(session, filters, limit=limit, cursor=cursor)
    preload(session, page.items)
    return {"items": [document_json(d) for d in page.items], "next_cursor": page.next_cursor}


@router.get(
    "/{document_id}",
    response_model=DocumentOut,
    summary="One document",
    responses=error_responses(401, 404, 422, 429),
)
def read_document(session: SessionDep, _key: CurrentKey, document_id: DocumentId) -> Any:
    return document_json(get_document(session, document_id))


@router.get(
    "/{document_id}/pages/{number}",
    response_class=FileResponse,
    summary="A rasterised page as PNG (1-based)",
    responses={
        200: {"content": {"image/png": {}}, "description": "The page image."},
        **error_responses(401, 404, 422, 429),
    },
)
def page_image(
    session: SessionDep,
    blobs: BlobsDep,
    _key: CurrentKey,
    document_id: DocumentId,
    number: Annotated[int, Path(ge=1, le=100_000)],
) -> FileResponse:
    get_document(session, document_id)
    page = session.scalar(select(Page).where(Page.document_id == document_id, Page.number == number))
    if page is None or not blobs.exists(page.blob_sha256):
        raise ApiError(404, "page_not_found", f"document {document_id} has no page {number} (yet)")
    return FileResponse(blobs.path(page.blob_sha256), media_type="image/png")


@router.post(
    "/{document_id}/review",
    response_model=DocumentOut,
    summary="Approve or reject a finished document, optionally with corrected data",
    description=(
        "Approved data becomes ground truth: the corrected `data` (else the extracted data) must fit the "
        "document type's schema (422 `invalid_review_data`, naming the paths) and stay within size bounds "
        "(422 `review_data_too_large`). The review's score is computed after the answer, off the request path."
    ),
    responses=error_responses(401, 404, 409, 422, 429),
)
def review_document(
    state: State,
    session: SessionDep,
    key: CurrentKey,
    document_id: DocumentId,
    review: ReviewIn,
    background: BackgroundTasks,
) -> Any:
    if review.action == "approve":
        document = get_document(session, document_id)
        if document.status in REVIEWABLE:  # any other is refused 409 by the review itself
            reviewing.check_approved_data(document, review.data)
        reviewing.approve(
            session,
            document,  # loaded once: approve reads its latest run from it
            actor=actor(key),
            data=review.data,
            via="api",
            score_later=reviewing.score_later(state, background),
        )
    else:
        reviewing.reject(session, document_id, actor=actor(key), reason=review.reason, via="api")
    return document_json(get_document_fresh(session, document_id))


REVIEWABLE = (DocumentStatus.DONE.value, DocumentStatus.NEEDS_REVIEW.value)


@router.delete(
    "/{document_id}",
    status_code=204,
    summary="Delete a document with its blobs, pages, results and reviews",
    responses=error_responses(401, 404, 422, 429),
)
def remove_document(
    session: SessionDep, blobs: BlobsDep, key: CurrentKey, document_id: DocumentId
) -> Response:
    delete_document(session, blobs, document_id)
    record_audit(session, actor=actor(key), action="delete", document_id=document_id)
    log.info("document %s deleted", document_id)
    return Response(status_code=204)
