"""The cheap look at a file: what it is by its magic bytes, and whether its header already shows it bad.

Nothing here decodes pixels or renders pages: images are opened header-only and PDFs are asked for
their page tree only. A file that is bad only deeper inside (truncated after its header, say) passes,
and fails later in the worker with the same error codes.
"""

from __future__ import annotations

from typing import BinaryIO

from PIL import Image, UnidentifiedImageError
from pypdf import PasswordType, PdfReader

from bayou.intake.limits import Limits
from extractor.errors import InputError
from extractor.images import check_min_side, check_pixels, count_frames
from extractor.rasterize import sniff_media_type

# enough for sniff_media_type, which looks for "%PDF-" within the first kilobyte
HEAD_BYTES = 1024
EMPTY_FILE = "empty_file"
UNSUPPORTED_TYPE = "unsupported_type"


def inspect(stream: BinaryIO, limits: Limits) -> str:
    """The file's media type, or an InputError saying why it is refused (`empty_file`,
    `unsupported_type`, `corrupt_file`, `encrypted_pdf`, `too_many_pages`, `too_many_pixels`, ...).
    Leaves `stream` at its start."""
    stream.seek(0)
    head = stream.read(HEAD_BYTES)
    stream.seek(0)
    if not head:
        raise InputError("the file is empty", code=EMPTY_FILE)
    media_type = sniff_media_type(head)
    if media_type is None:
        raise InputError("the content is no supported image type or PDF", code=UNSUPPORTED_TYPE)
    try:
        if media_type == "application/pdf":
            _inspect_pdf(stream, limits)
        else:
            _inspect_image(stream, limits)
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
            # reads at most max_pages + 1 page directories, never the whole chain
            frames = count_frames(image, limits.max_pages)
        except Exception as exc:
            raise InputError("damaged TIFF page list", code="corrupt_file") from exc
        if frames is None:
            raise InputError(
                f"the TIFF has more than {limits.max_pages} pages, the limit", code="too_many_pages"
            )
