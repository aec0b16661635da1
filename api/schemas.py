"""Request and response shapes of the REST API (pydantic). The database tables are storage.models;
api.documents turns one into the other."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from storage.models import DocumentStatus

DOCUMENT_ID_EXAMPLE = "doc_01JG3Z8Q9C7T6V4W2X0Y5R1M3N"


class ErrorDetail(BaseModel):
    code: str = Field(description="A stable snake_case word.", examples=["not_found"])
    message: str = Field(description="For people; may change between versions.")


class ErrorResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"example": {"error": {"code": "not_found", "message": "no document doc_..."}}}
    )

    error: ErrorDetail


class FieldError(BaseModel):
    path: str
    message: str


class CheckOutcome(BaseModel):
    name: str
    ok: bool
    message: str | None = None
    fields: list[str] | None = Field(
        default=None,
        description="value_on_page, failed: the JSON pointers of the values not found on the page.",
    )
    suggestions: dict[str, Any] | None = Field(
        default=None,
        description="license_barcode_agrees, failed: JSON pointer → the barcode's value where the model disagrees.",
    )

    # no return annotation on purpose: pydantic would take it as the serialised schema (a bare object in
    # the OpenAPI document) instead of these fields
    @model_serializer(mode="wrap")
    def _without_absent(self, handler: SerializerFunctionWrapHandler):
        # only the checks that carry them show these keys: every other check keeps its three
        shown: dict[str, Any] = handler(self)
        return {key: value for key, value in shown.items() if value is not None or key == "message"}


class Location(BaseModel):
    page: int = Field(description="From 1.")
    box: list[float] = Field(description="[x0, y0, x1, y1] in fractions of the page's width and height.")
    score: float = Field(description="0..1: how well the page's words match the value.")


class Tokens(BaseModel):
    prompt: int | None = None
    generated: int | None = None


class Result(BaseModel):
    """The latest extraction run of a document."""

    doc_type: str
    model: str
    data: dict[str, Any] | None
    raw_output: str
    valid: bool
    errors: list[FieldError]
    checks: list[CheckOutcome]
    confidence: dict[str, float] = Field(description="JSON pointer into `data` → 0..1")
    locations: dict[str, Location] = Field(
        default_factory=dict,
        description="JSON pointer into `data` → where the value is on its page (values found by OCR only)",
    )
    tiles: int | None
    tiles_per_page: list[int] | None = Field(
        default=None,
        description="Tiles each page got (fewer on a long document, to fit the context); null for runs stored before.",
    )
    tokens: Tokens
    timings_ms: dict[str, float]


class ReviewOut(BaseModel):
    action: Literal["approve", "reject"]
    data: dict[str, Any] | None
    reason: str | None
    by: str
    at: datetime


class ScoresOut(BaseModel):
    ted_accuracy: float
    f1: float
    perfect_match: bool
    ground_truth_source: str


class DocumentOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "id": DOCUMENT_ID_EXAMPLE,
                "filename": "receipt-2024-03-01.jpg",
                "doc_type": "receipt",
                "status": "queued",
                "pages": None,
                "model": "h2ovl-800m",
                "created_at": "2026-03-01T12:00:00Z",
                "updated_at": "2026-03-01T12:00:00Z",
                "result": None,
                "error": None,
                "review": None,
                "scores": None,
            }
        }
    )

    id: str = Field(description="Opaque.")
    filename: str = Field(description="The upload's name, sanitised; a display name, never a path.")
    doc_type: str
    status: DocumentStatus
    pages: int | None = Field(description="Rasterised pages; null before rasterising.")
    model: str | None
    created_at: datetime
    updated_at: datetime
    result: Result | None
    error: ErrorDetail | None
    review: ReviewOut | None
    scores: ScoresOut | None


class DocumentList(BaseModel):
    items: list[DocumentOut]
    next_cursor: str | None = Field(description="Pass back as `cursor` for the next page; null: no more.")


class ReviewIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"example": {"action": "approve", "data": {"total": "12.50"}, "reason": None}},
    )

    action: Literal["approve", "reject"]
    data: dict[str, Any] | None = Field(None, description="Corrected data; absent: the result as it is.")
    reason: str | None = Field(None, max_length=2000)


class BatchIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"example": {"folder": "scans/2026-03", "doc_type": "receipt", "recursive": True}},
    )

    folder: str = Field(
        min_length=1, max_length=4096, description="Relative to the server's batch root; never outside it."
    )
    doc_type: str
    recursive: bool = True


class BatchOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "id": "bat_01JG3Z8Q9C7T6V4W2X0Y5R1M3N",
                "folder": "scans/2026-03",
                "doc_type": "receipt",
                "recursive": True,
                "status": "done",
                "created_at": "2026-03-01T12:00:00Z",
                "updated_at": "2026-03-01T12:00:04Z",
                "total_files": 4,
                "created": 2,
                "duplicates": 1,
                "refused": 1,
                "refused_reasons": {"unsupported_type": 1},
                "error": None,
                "statuses": {"queued": 2},
            }
        }
    )

    id: str
    folder: str
    doc_type: str
    recursive: bool
    status: Literal["running", "done", "failed"] = Field(
        description="`running` while the folder is walked (the counts grow), then `done`; `failed` when the "
        "walk could not go on (see `error`)."
    )
    created_at: datetime
    updated_at: datetime | None = Field(None, description="The last progress recorded.")
    total_files: int = Field(description="Files looked at.")
    created: int = Field(description="New documents, enqueued: those that carry this batch's id, now.")
    duplicates: int = Field(
        description="Files whose content was already a document of this type (the rest of `total_files`)."
    )
    refused: int = Field(description="Files that are no supported document, or over a limit.")
    refused_reasons: dict[str, int] = Field(
        default_factory=dict, description="The refused files by error code (`empty_file`, `too_large`, ...)."
    )
    error: ErrorDetail | None = Field(None, description="Why a `failed` batch stopped.")
    statuses: dict[str, int] = Field(description="This batch's documents by status, now.")


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    checks: dict[str, str] = Field(default_factory=dict)


_ERROR_DESCRIPTIONS = {
    401: "Missing, wrong or revoked API key.",
    404: "Unknown id (document, page, batch or folder).",
    409: "The document is not `done` or `needs_review`.",
    413: "The body is over BAYOU_MAX_UPLOAD_MB.",
    415: "Not a supported type by its magic bytes (an empty file included).",
    422: "Validation failed: a missing field, unknown doc_type or model, malformed JSON, a folder outside "
    "the batch root, or a file refused on a cheap look (`corrupt_file`, `encrypted_pdf`, "
    "`too_many_pages`, `too_many_pixels`).",
    429: "Rate limited; see Retry-After.",
    503: "Not ready: the database or the broker does not answer.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for error statuses, all in the one error shape."""
    return {
        status: {"model": ErrorResponse, "description": _ERROR_DESCRIPTIONS[status]} for status in statuses
    }
