"""Storing a file that passed the cheap look: its blob first, then its row (`storage.create_document`),
so a refused or failed file leaves neither behind."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from pathlib import Path
from typing import BinaryIO, NamedTuple

from sqlalchemy.orm import Session

from bayou.intake.folders import FileIdentity
from bayou.intake.inspection import inspect
from bayou.intake.limits import Limits, check_size, too_large
from extractor.errors import InputError
from storage.blobs import BlobStore
from storage.documents import create_document, find_duplicate
from storage.errors import BlobTooLarge
from storage.models import Document

UNREADABLE = "unreadable"
NOT_A_REGULAR_FILE = "not_a_regular_file"  # a FIFO, socket or device: reading one could block forever
FILE_CHANGED = "file_changed"  # not the file that was checked: replaced, or a link put in its path since
# no link followed at the last step; a FIFO put there since opens at once (blocking, it would wait for a
# writer) and is then refused by its fstat
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


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
    expected: FileIdentity | None = None,
) -> Taken:
    """A file on disk in: refused by its size before it is read, known by its hash if recorded before,
    else inspected and stored. With `expected`, the identity the file had when its place was checked
    (`Candidate.identity`), only that very file is read. Raises InputError (refused: `unreadable` when the
    file is gone or not ours to read, `not_a_regular_file`, `file_changed`: see `open_checked`); an
    OSError is the store's own (a full or read-only data directory), not the file's."""
    with open_checked(path, expected) as stream:
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


def open_checked(path: Path, expected: FileIdentity | None = None) -> BinaryIO:
    """`path` opened for reading if it is a regular file, and the one checked (`expected`) when given:
    never through a symlink at its last step, and compared after opening (fstat), so a file swapped for a
    link, another file or a FIFO between the check and the open is refused, not read (a swapped directory
    above it is caught by the comparison). A FIFO, socket or device is refused before any open."""
    try:
        before = os.lstat(path)
    except OSError as exc:
        raise unreadable(exc) from exc
    if not stat.S_ISREG(before.st_mode) and not stat.S_ISLNK(before.st_mode):
        raise InputError("not a regular file (a FIFO, socket or device)", code=NOT_A_REGULAR_FILE)
    try:
        descriptor = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a symbolic link where a file was
            raise InputError("the file was replaced since it was checked", code=FILE_CHANGED) from exc
        raise unreadable(exc) from exc
    opened = os.fstat(descriptor)
    want = expected or FileIdentity.of(before)
    problem = None
    if not stat.S_ISREG(opened.st_mode):
        problem = InputError("not a regular file (a FIFO, socket or device)", code=NOT_A_REGULAR_FILE)
    elif FileIdentity.of(opened) != want:
        problem = InputError("the file was replaced since it was checked", code=FILE_CHANGED)
    if problem is not None:
        os.close(descriptor)
        raise problem
    return os.fdopen(descriptor, "rb")


def unreadable(error: OSError) -> InputError:
    # the file name can be personal: the message names the kind of failure only
    return InputError(f"the file could not be read ({type(error).__name__})", code=UNREADABLE)
