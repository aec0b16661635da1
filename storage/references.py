"""Which blobs the database still references, and removal of those it does not."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from storage.blobs import BlobStore
from storage.models import Document, Page

DEFAULT_ORPHAN_MIN_AGE_S = 3600.0


def is_referenced(session: Session, sha256: str) -> bool:
    statement = select(
        or_(
            exists().where(Document.content_sha256 == sha256),
            exists().where(Page.blob_sha256 == sha256),
        )
    )
    return bool(session.scalar(statement))


def discard_if_unreferenced(session: Session, blobs: BlobStore, hashes: Iterable[str]) -> list[str]:
    """Deletes each blob that no committed row references; returns the deleted hashes. Call it outside
    any transaction of your own: it ends the session's transaction, and a writer's uncommitted row
    would be invisible to it (the exclusive lock makes it wait for that writer instead)."""
    deleted = []
    for sha256 in sorted(set(hashes)):
        with blobs.lock(sha256, exclusive=True):
            referenced = is_referenced(session, sha256)
            # commit, not rollback: a rollback would expire the caller's loaded objects
            session.commit()
            if not referenced and blobs.delete(sha256):
                deleted.append(sha256)
    return deleted


def cleanup_orphan_blobs(
    session: Session, blobs: BlobStore, *, min_age_s: float = DEFAULT_ORPHAN_MIN_AGE_S
) -> list[str]:
    """Removes blobs no row references, e.g. after a crash between a commit and a blob deletion. Young
    blobs are spared: a writer that does not take the blob locks may be about to reference them."""
    blobs.remove_stale_temp_files(min_age_s=min_age_s)
    candidates = []
    for sha256 in blobs.iter_hashes():
        try:
            old_enough = blobs.age_seconds(sha256) >= min_age_s
        except FileNotFoundError:
            continue
        if old_enough:
            candidates.append(sha256)
    return discard_if_unreferenced(session, blobs, candidates)
