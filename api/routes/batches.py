"""/v1/batches: ingest a folder under the configured batch root, in the background."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from api.batches import Starter, batch_json, get_batch, record_batch
from api.deps import CurrentKey, SessionDep, State
from api.errors import ApiError
from api.schemas import BatchIn, BatchOut, error_responses
from extractor.schemas import available_types

router = APIRouter(prefix="/v1/batches", tags=["batches"])


@router.post(
    "",
    status_code=202,
    response_model=BatchOut,
    summary="Enqueue every supported file of a folder once",
    response_description="Recorded as `running`; the folder is walked in the background.",
    responses=error_responses(401, 404, 422, 429),
)
def create_batch(state: State, session: SessionDep, _key: CurrentKey, start: Starter, body: BatchIn) -> Any:
    if body.doc_type not in available_types():
        raise ApiError(422, "unknown_doc_type", f"doc_type must be one of {', '.join(available_types())}")
    # a folder outside the root or missing is refused here, at once; the files are looked at later
    batch = record_batch(
        session, root=state.batch_root, folder=body.folder, doc_type=body.doc_type, recursive=body.recursive
    )
    start(batch.id)
    return batch_json(session, batch)


@router.get(
    "/{batch_id}",
    response_model=BatchOut,
    summary="A batch: its progress, counts and documents' statuses",
    responses=error_responses(401, 404, 422, 429),
)
def read_batch(session: SessionDep, _key: CurrentKey, batch_id: Annotated[str, Path(max_length=64)]) -> Any:
    return batch_json(session, get_batch(session, batch_id))
