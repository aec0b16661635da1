"""Taking a file in: refuse what a cheap look shows is bad, then store it (blob first, then its row).

Nothing here decodes pixels or renders pages: images are opened header-only and PDFs are asked for
their page tree only. A file that is bad only deeper inside (truncated after its header, say) is
accepted and fails later in the worker with the same error codes. Every refusal happens before
`create_document`, so a refused file leaves neither a row nor a blob.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError
from pypdf import PasswordType, PdfReader
from sqlalchemy.orm import Session

from api.errors import ApiError
from bayou.settings import Settings
from extractor.errors import InputError
from extractor.images import check_min_side, check_pixels
from extractor.rasterize import sniff_media_type
from storage.blobs import BlobStore
from storage.documents import create_document
from storage.errors import BlobTooLarge
from storage.models import Document

log = logging.getLogger(__name__)

MIB = 1 << 20
# enough for sniff_media_type, which looks for "%PDF-" within the first kilobyte
HEAD_BYTES = 1024


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_pages: int
    max_pixels: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(settings.max_upload_mb * MIB, settings.max_pages, settings.max_pixels)


def inspect(stream: BinaryIO, limits: Limits) -> str:
    """The file's media type, or an ApiError saying why it is refused. Leaves `stream` at its start."""
    stream.seek(0)
    head = stream.read(HEAD_BYTES)
    stream.seek(0)
    if not head:
        raise ApiError(415, "empty_file", "the file is empty")
    media_type = sniff_media_type(head)
    if media_type is None:
        raise ApiError(415, "unsupported_type", "the content is no supported image type or PDF")
    try:
        if media_type == "application/pdf":
            _inspect_pdf(stream, limits)
        else:
            _inspect_image(stream, limits)
    except InputError as exc:
        raise ApiError(422, exc.code, exc.message) from exc
    finally:
        stream.seek(0)
    return media_type


def _inspect_pdf(stream: BinaryIO, limits: Limits) -> None:
    # pypdf reads the cross-reference table and page tree only; no stream is inflated
    try:
        reader = PdfReader(stream, strict=False)
        encrypted = reader.is_encrypted
    except Exception as exc:  # pypdf raises many unrelated types on damage
        raise InputError("damaged PDF: its structure cannot be read", code="corrupt_file") from exc
    if encrypted:
        # an empty user password opens in every viewer, and in the renderer: those are fine
        try:
            opened = reader.decrypt("") != PasswordType.NOT_DECRYPTED
        except Exception:
            opened = False
        if not opened:
            raise InputError("the PDF is password-protected", code="encrypted_pdf")
    try:
        count = len(reader.pages)
    except Exception as exc:
        raise InputError("damaged PDF: its page tree cannot be read", code="corrupt_file") from exc
    if count == 0:
        raise InputError("the PDF has no pages", code="corrupt_file")
    if count > limits.max_pages:
        raise InputError(
            f"the PDF has {count} pages, above the limit of {limits.max_pages}", code="too_many_pages"
        )


def _inspect_image(stream: BinaryIO, limits: Limits) -> None:
    try:
        # lazy: reads the header only; the stream stays open (it is not ours to close)
        image = Image.open(stream)
    except Image.DecompressionBombError as exc:
        raise InputError("the image has too many pixels", code="too_many_pixels") from exc
    except UnidentifiedImageError as exc:
        # the magic bytes matched, so this is a damaged or truncated header rather than another type
        raise InputError("damaged image: its header cannot be read", code="corrupt_file") from exc
    except Exception as exc:
        raise InputError("damaged image: its header cannot be read", code="corrupt_file") from exc
    check_pixels(image.size, limits.max_pixels)
    check_min_side(image.size)
    if getattr(image, "format", None) == "TIFF":
        try:
            frames = int(getattr(image, "n_frames", 1))
        except Exception as exc:
            raise InputError("damaged TIFF page list", code="corrupt_file") from exc
        if frames > limits.max_pages:
            raise InputError(
                f"the TIFF has {frames} pages, above the limit of {limits.max_pages}",
                code="too_many_pages",
            )


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
    batch_id: str | None = None,
) -> tuple[Document, bool]:
    """The document for an inspected file: new (True) or the existing one with the same bytes, type
    and model (False)."""
    try:
        return create_document(
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
    except BlobTooLarge as exc:
        # a file that grew between inspection and storing (a folder being written to)
        raise ApiError(413, "too_large", f"the file is over {limits.max_bytes} bytes") from exc
