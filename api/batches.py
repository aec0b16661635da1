"""Batch ingestion of a folder on the server. The request only checks the folder (relative to the
configured root and confined to it: no absolute path, no `..`, no symlink leading outside), records the
batch as `running` and starts its walk in the background (`workers.batching`); the walk's progress and
counts land on the batch row, which `GET /v1/batches/{id}` reports."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from fastapi import BackgroundTasks, Depends
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.deps import AppState, State
from bayou.intake import resolve_folder
from bayou.intake.batches import BatchJob, run_batch
from storage.errors import NotFound
from storage.ids import new_id
from storage.models import Batch, BatchStatus, Document
from workers.batching import send_ingest_batch

log = logging.getLogger(__name__)

# start(batch_id): has the batch's folder walked, somewhere other than in the request
StartBatch = Callable[[str], None]


def record_batch(session: Session, *, root: Path, folder: str, doc_type: str, recursive: bool) -> Batch:
    """A running batch for `folder`, once it is known to be a directory confined to `root`; raises
    InputError `invalid_folder` or `folder_not_found` (nothing recorded) otherwise."""
    resolve_folder(root, folder)
    batch = Batch(
        id=new_id("bat"),
        folder=folder,
        doc_type=doc_type,
        recursive=recursive,
        status=BatchStatus.RUNNING.value,
        root=str(root.resolve()),
    )
    session.add(batch)
    session.commit()
    return batch


def start_in_workers(batch_id: str) -> None:
    """Sends the batch's walk to a cpu worker. A failure to send leaves the batch running, where the
    workers' sweep of stalled batches starts it later, rather than failing the request."""
    try:
        send_ingest_batch(batch_id)
    except Exception:
        log.exception("could not start batch %s; a worker's sweep of stalled batches will", batch_id)


def start_in_process(state: AppState, background: BackgroundTasks) -> StartBatch:
    """The walk as a background task of the request, run once the response is sent, handing documents
    to the app's own enqueue."""
    job = BatchJob(state.sessions, state.blobs, state.settings, enqueue=state.enqueue)
    return lambda batch_id: background.add_task(run_batch, job, batch_id)


def batch_starter(state: State, background: BackgroundTasks) -> StartBatch:
    """Where the walk goes: to the workers, like the app's documents; an app built with an enqueue of
    its own (tests, a program embedding the API) has no workers to send it to, so it walks in-process.
    A dependency, so a test can also hold walks back."""
    if state.workers:
        return start_in_workers
    return start_in_process(state, background)


Starter = Annotated[StartBatch, Depends(batch_starter)]


def get_batch(session: Session, batch_id: str) -> Batch:
    batch = session.get(Batch, batch_id)
    if batch is None:
        raise NotFound(f"no batch {batch_id}")
    return batch


def status_counts(session: Session, batch_id: str) -> dict[str, int]:
    rows = session.execute(
        select(Document.status, func.count()).where(Document.batch_id == batch_id).group_by(Document.status)
    )
    return {status: count for status, count in rows}


def batch_json(session: Session, batch: Batch) -> dict[str, object]:
    error = {"code": batch.error_code, "message": batch.error_message} if batch.error_code else None
    return {
        "id": batch.id,
        "folder": batch.folder,
        "doc_type": batch.doc_type,
        "recursive": batch.recursive,
        "status": batch.status,
        "created_at": batch.created_at,
        "updated_at": batch.updated_at,
        "total_files": batch.total_files,
        "created": batch.created_count,
        "duplicates": batch.duplicate_count,
        "refused": batch.refused_count,
        "refused_reasons": batch.refused_reasons or {},
        "error": error,
        "statuses": status_counts(session, batch.id),
    }
