"""Batch ingestion of a folder on the server. The folder is named relative to a configured root and must
stay inside it: no absolute paths, no `..`, and no symlink (of the folder or of any file in it) that
leads outside."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.errors import ApiError
from api.uploads import Limits, inspect, store_upload
from storage.blobs import BlobStore
from storage.errors import NotFound
from storage.ids import new_id
from storage.models import Batch, Document


@dataclass(frozen=True)
class Accepted:
    document_id: str
    model: str | None


log = logging.getLogger(__name__)


def resolve_folder(root: Path, folder: str) -> Path:
    """The real directory `folder` names under `root`, or an ApiError."""
    if "\x00" in folder or "\\" in folder:
        raise ApiError(422, "invalid_folder", "the folder name contains a forbidden character")
    relative = PurePosixPath(folder)
    if relative.is_absolute() or ".." in relative.parts:
        raise ApiError(422, "invalid_folder", "the folder must be relative to the batch root, without '..'")
    real_root = root.resolve()
    target = (real_root / relative).resolve()
    if not target.is_relative_to(real_root):
        raise ApiError(422, "invalid_folder", "the folder leads outside the batch root")
    if not target.is_dir():
        raise ApiError(404, "folder_not_found", "no such folder under the batch root")
    return target


def candidate_files(folder: Path, root: Path, *, recursive: bool) -> Iterator[Path]:
    """Regular files in `folder` (and below, if recursive) whose real location is inside `root`, in a
    stable order. Hidden files are skipped: they are usually partial copies or editor leftovers."""
    real_root = root.resolve()
    for directory, subdirs, files in os.walk(folder, followlinks=False):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith(".")) if recursive else []
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(directory) / name
            real = path.resolve()
            if real.is_relative_to(real_root) and real.is_file():
                yield real


def ingest_folder(
    session: Session,
    blobs: BlobStore,
    *,
    root: Path,
    folder: str,
    doc_type: str,
    model: str | None,
    recursive: bool,
    limits: Limits,
) -> tuple[Batch, list[Accepted]]:
    """Records a batch and one document per new file; returns the documents to enqueue."""
    target = resolve_folder(root, folder)
    batch = Batch(id=new_id("bat"), folder=folder, doc_type=doc_type, recursive=recursive)
    session.add(batch)
    session.commit()
    accepted: list[Accepted] = []
    # counted here, not on the row: a failed insert rolls the session back and would lose them
    total = duplicates = refused = 0
    for path in candidate_files(target, root, recursive=recursive):
        total += 1
        try:
            with path.open("rb") as stream:
                media_type = inspect(stream, limits)
                document, created = store_upload(
                    session,
                    blobs,
                    source=stream,
                    filename=path.name,
                    media_type=media_type,
                    doc_type=doc_type,
                    model=model,
                    limits=limits,
                    batch_id=batch.id,
                )
        except (ApiError, OSError) as exc:
            # file names can be personal (a licence holder's name): the log gets counts and codes only
            log.info("batch %s: file refused (%s)", batch.id, getattr(exc, "code", type(exc).__name__))
            refused += 1
            continue
        if created:
            accepted.append(Accepted(document.id, document.model))
        else:
            duplicates += 1
    batch.total_files = total
    batch.created_count = len(accepted)
    batch.duplicate_count = duplicates
    batch.refused_count = refused
    session.commit()
    log.info(
        "batch %s: %d files, %d new, %d duplicates, %d refused",
        batch.id,
        batch.total_files,
        batch.created_count,
        batch.duplicate_count,
        batch.refused_count,
    )
    return batch, accepted


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
    return {
        "id": batch.id,
        "folder": batch.folder,
        "doc_type": batch.doc_type,
        "recursive": batch.recursive,
        "created_at": batch.created_at,
        "total_files": batch.total_files,
        "created": batch.created_count,
        "duplicates": batch.duplicate_count,
        "refused": batch.refused_count,
        "statuses": status_counts(session, batch.id),
    }
