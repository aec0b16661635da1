"""Documents (PDF, multi-page TIFF, single images) to page images, with every limit checked up front.

This runs in the CPU task, never on the GPU worker. Hostile input is expected: page counts and page sizes
are read cheaply with pypdf and refused before poppler renders anything, and the renderer runs under a
timeout. pypdf is only asked for the page tree and boxes, never for text or streams, so a PDF whose
streams inflate to gigabytes costs nothing here.
"""

from __future__ import annotations

import io
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pdf2image import convert_from_path
from pdf2image.exceptions import (
    PDFInfoNotInstalledError,
    PDFPageCountError,
    PDFPopplerTimeoutError,
    PopplerNotInstalledError,
)
from PIL import Image
from pypdf import PasswordType, PdfReader

from extractor.errors import ConfigurationError, InputError
from extractor.images import (
    DEFAULT_MAX_PIXELS,
    check_min_side,
    check_pixels,
    count_frames,
    decode_frame,
    load_image,
    normalize_image,
    open_image,
    read_source,
)

DEFAULT_DPI = 200
DEFAULT_MAX_PAGES = 20
DEFAULT_RENDER_TIMEOUT_S = 120
POINTS_PER_INCH = 72.0
# page_count_hint counts a TIFF's pages up to this many (None beyond): each is a directory read
_HINT_MAX_PAGES = 1000

T = TypeVar("T")

# HEIF brands (ISO/IEC 23008-12) for still images and sequences; AVIF ("avif") is deliberately absent.
_HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"heif", b"mif1", b"msf1"}
)
# Sizes of the BMP info headers that exist; checking one stops any text starting "BM" passing as a BMP.
_BMP_INFO_HEADER_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})
# Readers accept junk before "%PDF-" within the first kilobyte, and real files do carry some.
_PDF_HEADER_WINDOW = 1024


def sniff_media_type(head: bytes) -> str | None:
    """The media type of a file from its first bytes (names and declared types are never trusted)."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "image/tiff"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return "image/heic"
    if _is_bmp(head):
        return "image/bmp"
    if b"%PDF-" in head[:_PDF_HEADER_WINDOW]:
        return "application/pdf"
    return None


def _is_bmp(head: bytes) -> bool:
    return (
        len(head) >= 18
        and head[:2] == b"BM"
        and int.from_bytes(head[14:18], "little") in _BMP_INFO_HEADER_SIZES
    )


def rasterize(
    source: bytes | str | Path,
    *,
    dpi: int = DEFAULT_DPI,
    max_pages: int = DEFAULT_MAX_PAGES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    timeout_s: int = DEFAULT_RENDER_TIMEOUT_S,
) -> list[Image.Image]:
    """One RGB image per page: PDF pages at `dpi`, TIFF frames, or the single image of any other file."""
    if dpi <= 0:
        raise ValueError(f"dpi must be positive, got {dpi}")
    data = read_source(source)
    if not data:
        raise InputError("the file is empty", code="empty_file")
    media_type = sniff_media_type(data[:_PDF_HEADER_WINDOW])
    if media_type is None:
        raise InputError("not a PDF or a supported image type", code="unsupported_type")
    if media_type == "application/pdf":
        return _rasterize_pdf(data, dpi=dpi, max_pages=max_pages, max_pixels=max_pixels, timeout_s=timeout_s)
    if media_type == "image/tiff":
        return _tiff_pages(data, max_pages=max_pages, max_pixels=max_pixels)
    # A photo is one page; callers sharing a page budget across files may have none left for it.
    if max_pages < 1:
        raise InputError(f"the page limit ({max_pages}) leaves no room for an image", code="too_many_pages")
    return [load_image(data, max_pixels=max_pixels)]


def page_count_hint(source: bytes | str | Path) -> int | None:
    """Number of pages without rendering anything (for refusing uploads early); None if unknown."""
    try:
        data = read_source(source)
    except InputError:
        return None
    media_type = sniff_media_type(data[:_PDF_HEADER_WINDOW])
    if media_type is None:
        return None
    try:
        if media_type == "application/pdf":
            return len(_open_pdf(data).pages)
        if media_type == "image/tiff":
            return count_frames(Image.open(io.BytesIO(data)), _HINT_MAX_PAGES)
    except Exception:  # a hint must never raise: the real check happens in rasterize
        return None
    return 1


def _open_pdf(data: bytes) -> PdfReader:
    """A pypdf reader on `data`, decrypted with the empty password if the file is encrypted."""
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        encrypted = reader.is_encrypted
    except Exception as exc:  # pypdf raises a zoo of types (PdfReadError, ValueError, KeyError...) on damage
        raise InputError(f"damaged PDF: {exc}", code="corrupt_file") from exc
    if encrypted:
        # Files "encrypted" with an empty user password open in any viewer without asking, so we accept them;
        # poppler opens them the same way. Anything else needs a password we do not have.
        try:
            opened = reader.decrypt("") != PasswordType.NOT_DECRYPTED
        except Exception:  # e.g. an unsupported security handler, or AES without a crypto library
            opened = False
        if not opened:
            raise InputError("the PDF is password-protected", code="encrypted_pdf")
    return reader


def _page_pixels(reader: PdfReader, dpi: int) -> list[tuple[int, int]]:
    """Each page's size in pixels at `dpi`, computed from its media box the way pdftoppm rounds it."""
    sizes = []
    for page in reader.pages:
        box = page.mediabox
        width = math.ceil(abs(float(box.width)) * dpi / POINTS_PER_INCH)
        height = math.ceil(abs(float(box.height)) * dpi / POINTS_PER_INCH)
        if page.rotation % 180 == 90:
            width, height = height, width
        sizes.append((width, height))
    return sizes


def _checked_page_sizes(data: bytes, *, dpi: int, max_pages: int, max_pixels: int) -> list[tuple[int, int]]:
    """Page sizes in pixels at `dpi`, after refusing the document on page count or page size."""
    reader = _open_pdf(data)
    count = _page_tree(lambda: len(reader.pages))
    if count == 0:
        raise InputError("the PDF has no pages", code="corrupt_file")
    if count > max_pages:
        raise InputError(f"the PDF has {count} pages, above the limit of {max_pages}", code="too_many_pages")
    sizes = _page_tree(lambda: _page_pixels(reader, dpi))
    for number, size in enumerate(sizes, start=1):
        if min(size) <= 0:
            raise InputError(f"page {number} has an empty media box", code="corrupt_file")
        check_pixels(size, max_pixels)
    return sizes


def _page_tree(read: Callable[[], T]) -> T:
    """Run `read` on the page tree; broken trees (cycles, missing objects) raise all sorts of things."""
    try:
        return read()
    except Exception as exc:
        raise InputError(f"damaged PDF page tree: {exc}", code="corrupt_file") from exc


def _rasterize_pdf(
    data: bytes, *, dpi: int, max_pages: int, max_pixels: int, timeout_s: int
) -> list[Image.Image]:
    sizes = _checked_page_sizes(data, dpi=dpi, max_pages=max_pages, max_pixels=max_pixels)
    with tempfile.TemporaryDirectory(prefix="bayou-pdf-") as workdir:
        pdf_path = Path(workdir) / "input.pdf"
        pdf_path.write_bytes(data)
        paths = _render_to_files(pdf_path, Path(workdir), dpi=dpi, timeout_s=timeout_s)
        if len(paths) != len(sizes):
            raise InputError(
                f"only {len(paths)} of {len(sizes)} pages could be rendered", code="corrupt_file"
            )
        # Pages go through files rather than poppler's stdout so no document-sized buffer is ever held;
        # they must be loaded before the directory goes away.
        return [_load_rendered_page(path, max_pixels) for path in paths]


def _render_to_files(pdf_path: Path, outdir: Path, *, dpi: int, timeout_s: int) -> list[str]:
    try:
        return convert_from_path(
            pdf_path,
            dpi=dpi,
            output_folder=outdir,
            fmt="ppm",
            paths_only=True,
            timeout=timeout_s,
        )
    except PDFPopplerTimeoutError as exc:
        raise InputError(f"rendering the PDF took longer than {timeout_s} s", code="corrupt_file") from exc
    except PDFPageCountError as exc:
        raise InputError("poppler cannot read this PDF", code="corrupt_file") from exc
    except (PDFInfoNotInstalledError, PopplerNotInstalledError) as exc:
        raise ConfigurationError("poppler-utils (pdftoppm, pdfinfo) is not installed") from exc


def _load_rendered_page(path: str, max_pixels: int) -> Image.Image:
    # Poppler's idea of the page size could differ from pypdf's; check again before decoding. The copy
    # outlives the `with`, which frees the opened image's memory on exit.
    with Image.open(path) as page:
        check_pixels(page.size, max_pixels)
        check_min_side(page.size)
        page.load()
        return normalize_image(page.copy())


def _tiff_pages(data: bytes, *, max_pages: int, max_pixels: int) -> list[Image.Image]:
    image = open_image(data, max_pixels=max_pixels)
    try:
        count = count_frames(image, max_pages)
    except Exception as exc:
        raise InputError(f"damaged TIFF page list: {exc}", code="corrupt_file") from exc
    if count is None:
        raise InputError(f"the TIFF has more than {max_pages} pages, the limit", code="too_many_pages")
    pages = []
    for index in range(count):
        try:
            image.seek(index)
        except Exception as exc:
            raise InputError(f"damaged TIFF page {index + 1}: {exc}", code="corrupt_file") from exc
        # Frames of one TIFF can each have their own size.
        check_pixels(image.size, max_pixels)
        check_min_side(image.size)
        pages.append(decode_frame(image))
    return pages
