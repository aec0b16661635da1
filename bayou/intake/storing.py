"""Storing a file that passed the cheap look: its blob first, then its row (`storage.create_document`),
so a refused or failed file leaves neither behind."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import BinaryIO, NamedTuple

from sqlalchemy.orm import Session

from bayou.intake.inspection import inspect
from bayou.intake.limits import Limits, check_size, too_large
from extractor.errors import InputError
from storage.blobs import BlobStore
from storage.documents import create_document, find_duplicate
from storage.errors import BlobTooLarge
from storage.models import Document

UNREADABLE = "unreadable"


class Taken(NamedTuple):
    document: Document
    created: bool  # False: the same bytes, type and model were a document already


def store_file(
    session: Session,
    blobs: BlobStore,
    *,
    source: BinaryIO | Path,
    filename: str | None,
    media_type: str,
    doc_type: str,
    model: str | None,
    limits: Limits,
    callback_url: str | None = None,
    batch_id: str | None = None,
) -> Taken:
    """The document for an inspected file: new, or the existing one with the same bytes, type and
    model. InputError `too_large` when the bytes exceed the cap (a file that grew since inspection)."""
    try:
        return Taken(
            *create_document(
                session,
                blobs,
                stream_or_path=source,
                filename=filename,
                media_type=media_type,
                doc_type=doc_type,
                model=model,
                callback_url=callback_url,
                batch_id=batch_id,
                max_bytes=limits.max_bytes,
            )
        )
    except BlobTooLarge as exc:
        raise too_large(limits) from exc


def take_file(
    session: Session,
    blobs: BlobStore,
    path: Path,
    *,
    doc_type: str,
    model: str | None,
    limits: Limits,
    batch_id: str | None = None,
) -> Taken:
    """A file on disk in: refused by its size before it is read, known by its hash if recorded before,
    else inspected and stored. Raises InputError (refused; `unreadable` when the file is gone or not
    ours to read); an OSError is the store's own (a full or read-only data directory), not the file's."""
    try:
        stream = path.open("rb")
    except OSError as exc:
        raise unreadable(exc) from exc
    with stream:
        try:
            check_size(os.fstat(stream.fileno()).st_size, limits)
            # a re-run (or a resumed batch) meets mostly recorded content: the hash spares staging a copy
            digest = hashlib.file_digest(stream, "sha256").hexdigest()
        except OSError as exc:
            raise unreadable(exc) from exc
        existing = find_duplicate(session, digest, doc_type, model)
        if existing is not None:
            return Taken(existing, False)
        try:
            media_type = inspect(stream, limits)
        except OSError as exc:
            raise unreadable(exc) from exc
        return store_file(
            session,
            blobs,
            source=stream,
            filename=path.name,
            media_type=media_type,
            doc_type=doc_type,
            model=model,
            limits=limits,
            batch_id=batch_id,
        )


def unreadable(error: OSError) -> InputError:
    # the file name can be personal: the message names the kind of failure only
    return InputError(f"the file could not be read ({type(error).__name__})", code=UNREADABLE)
