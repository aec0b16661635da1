"""/v1/batches: ingest a folder under the configured batch root."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from api.batches import batch_json, get_batch, ingest_folder
from api.deps import BlobsDep, CurrentKey, SessionDep, State
from api.errors import ApiError
from api.queueing import enqueue_safely
from api.schemas import BatchIn, BatchOut, error_responses
from api.uploads import Limits
from bayou.engines import model_name
from extractor.schemas import available_types

router = APIRouter(prefix="/v1/batches", tags=["batches"])


@router.post(
    "",
    status_code=201,
    response_model=BatchOut,
    summary="Enqueue every supported file of a folder once",
    responses=error_responses(401, 404, 422, 429),
)
def create_batch(state: State, session: SessionDep, blobs: BlobsDep, _key: CurrentKey, body: BatchIn) -> Any:
    if body.doc_type not in available_types():
        raise ApiError(422, "unknown_doc_type", f"doc_type must be one of {', '.join(available_types())}")
    batch, accepted = ingest_folder(
        session,
        blobs,
        root=state.batch_root,
        folder=body.folder,
        doc_type=body.doc_type,
        model=model_name(None, body.doc_type, state.settings),
        recursive=body.recursive,
        limits=Limits.from_settings(state.settings),
    )
    for item in accepted:
        enqueue_safely(state.enqueue, item.document_id, model=item.model, doc_type=body.doc_type)
    return batch_json(session, batch)


@router.get(
    "/{batch_id}",
    response_model=BatchOut,
    summary="A batch and its documents' statuses",
    responses=error_responses(401, 404, 422, 429),
)
def read_batch(session: SessionDep, _key: CurrentKey, batch_id: Annotated[str, Path(max_length=64)]) -> Any:
    return batch_json(session, get_batch(session, batch_id))
