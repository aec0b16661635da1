"""An upload taken in over HTTP: the intake's cheap look and storing (`bayou.intake`), with its typed
refusals raised as ApiErrors, so the upload route counts and logs them as it does its own."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from sqlalchemy.orm import Session

from api.errors import refusal
from bayou import intake
from bayou.intake import MIB, Limits
from extractor.errors import InputError
from storage.blobs import BlobStore

__all__ = ["MIB", "Limits", "inspect", "store_upload"]


def inspect(stream: BinaryIO, limits: Limits) -> str:
    """The file's media type, or an ApiError (413, 415 or 422) saying why it is refused."""
    try:
        return intake.inspect(stream, limits)
    except InputError as exc:
        raise refusal(exc) from exc


def store_upload(
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
) -> intake.Taken:
    """The document for an inspected upload, new or the existing one (`created` False)."""
    try:
        return intake.store_file(
            session,
            blobs,
            source=source,
            filename=filename,
            media_type=media_type,
            doc_type=doc_type,
            model=model,
            limits=limits,
            callback_url=callback_url,
        )
    except InputError as exc:
        raise refusal(exc) from exc
