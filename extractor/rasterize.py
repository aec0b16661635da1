"""Documents (PDF, multi-page TIFF, single images) to page images, with every limit checked up front.

This runs in the CPU task, never on the GPU worker. Hostile input is expected: page counts and page sizes
are read cheaply with pypdf and refused before poppler renders anything, and the renderer runs under a
timeout. pypdf is only asked for the page tree and boxes, never for text or streams, so a PDF whose
streams inflate to gigabytes costs nothing here.
"""

from __future__ import annotations

import io
import os
import tempfile
import time
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
    normalize_image,
    open_image,
    read_source,
)
from extractor.pixel_budget import (
    DEFAULT_MAX_DOCUMENT_PIXELS,
    pdf_page_dpis,
    raster_scale,
    scaled_size,
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
    max_document_pixels: int = DEFAULT_MAX_DOCUMENT_PIXELS,
    timeout_s: int = DEFAULT_RENDER_TIMEOUT_S,
) -> list[Image.Image]:
    """One RGB image per page: PDF pages at `dpi`, TIFF frames, or the single image of any other file.

    No page has more than `max_pixels` and all of them together at most `max_document_pixels`: a PDF page
    is rendered at a lower resolution where it would have more, an image over the document's budget is
    shrunk once decoded, and one over the page cap is refused (`too_many_pixels`) before decoding."""
    if dpi <= 0:
        raise ValueError(f"dpi must be positive, got {dpi}")
    data = read_source(source)
    if not data:
        raise InputError("the file is empty", code="empty_file")
    media_type = sniff_media_type(data[:_PDF_HEADER_WINDOW])
    if media_type is None:
        raise InputError("not a PDF or a supported image type", code="unsupported_type")
    if media_type == "application/pdf":
        dpis = _planned_dpis(
            data, dpi=dpi, max_pages=max_pages, max_pixels=max_pixels, max_document_pixels=max_document_pixels
        )
        return _rasterize_pdf(data, dpis, max_pixels=max_pixels, timeout_s=timeout_s)
    if media_type == "image/tiff":
        return _tiff_pages(
            data, max_pages=max_pages, max_pixels=max_pixels, max_document_pixels=max_document_pixels
        )
    # A photo is one page; callers sharing a page budget across files may have none left for it.
    if max_pages < 1:
        raise InputError(f"the page limit ({max_pages}) leaves no room for an image", code="too_many_pages")
    image = open_image(data, max_pixels=max_pixels)
    factor = raster_scale([image.size], max_document_pixels)
    return [shrink(decode_frame(image), factor)]


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


def _page_sizes(reader: PdfReader) -> list[tuple[float, float]]:
    """Each page's size in inches from its media box, turned as it is shown (what pdftoppm renders)."""
    sizes = []
    for page in reader.pages:
        box = page.mediabox
        width, height = abs(float(box.width)) / POINTS_PER_INCH, abs(float(box.height)) / POINTS_PER_INCH
        if page.rotation % 180 == 90:
            width, height = height, width
        sizes.append((width, height))
    return sizes


def _planned_dpis(
    data: bytes, *, dpi: int, max_pages: int, max_pixels: int, max_document_pixels: int
) -> list[float]:
    """The resolution of each page (`dpi`, or less to keep within the pixel limits), after refusing the
    document on its page count; nothing is rendered."""
    reader = _open_pdf(data)
    count = _page_tree(lambda: len(reader.pages))
    if count == 0:
        raise InputError("the PDF has no pages", code="corrupt_file")
    if count > max_pages:
        raise InputError(f"the PDF has {count} pages, above the limit of {max_pages}", code="too_many_pages")
    sizes = _page_tree(lambda: _page_sizes(reader))
    for number, size in enumerate(sizes, start=1):
        if min(size) * dpi < 1:
            raise InputError(f"page {number} has an empty media box", code="corrupt_file")
    return pdf_page_dpis(sizes, dpi=dpi, max_pixels=max_pixels, max_document_pixels=max_document_pixels)


def _page_tree(read: Callable[[], T]) -> T:
    """Run `read` on the page tree; broken trees (cycles, missing objects) raise all sorts of things."""
    try:
        return read()
    except Exception as exc:
        raise InputError(f"damaged PDF page tree: {exc}", code="corrupt_file") from exc


def _rasterize_pdf(data: bytes, dpis: list[float], *, max_pixels: int, timeout_s: int) -> list[Image.Image]:
    deadline = time.monotonic() + timeout_s
    pages: list[Image.Image] = []
    with tempfile.TemporaryDirectory(prefix="bayou-pdf-") as workdir:
        pdf_path = Path(workdir) / "input.pdf"
        pdf_path.write_bytes(data)
        # one poppler run per stretch of pages at the same resolution: one run for an ordinary document
        for first, last, dpi in _runs(dpis):
            paths = _render_to_files(
                pdf_path,
                Path(workdir),
                dpi=dpi,
                first=first,
                last=last,
                deadline=deadline,
                timeout_s=timeout_s,
            )
            if len(paths) != last - first + 1:
                raise InputError(
                    f"only {len(pages) + len(paths)} of {len(dpis)} pages could be rendered",
                    code="corrupt_file",
                )
            # Pages go through files rather than poppler's stdout so no document-sized buffer is ever held;
            # each is removed once loaded, so pixels are not held twice (in memory and on disk) for long.
            for path in paths:
                pages.append(_load_rendered_page(path, max_pixels))
                os.unlink(path)
    return pages


def _runs(dpis: list[float]) -> list[tuple[int, int, float]]:
    """(first page, last page, dpi) for each stretch of consecutive pages at the same dpi; pages from 1."""
    runs: list[tuple[int, int, float]] = []
    for number, dpi in enumerate(dpis, start=1):
        if runs and runs[-1][2] == dpi:
            runs[-1] = (runs[-1][0], number, dpi)
        else:
            runs.append((number, number, dpi))
    return runs


def _render_to_files(
    pdf_path: Path, outdir: Path, *, dpi: float, first: int, last: int, deadline: float, timeout_s: int
) -> list[str]:
    remaining = deadline - time.monotonic()
    try:
        if remaining <= 0:
            raise PDFPopplerTimeoutError("no time left for the next pages")
        return convert_from_path(
            pdf_path,
            dpi=int(dpi) if dpi == int(dpi) else dpi,  # pdftoppm takes "-r 52.3" as well as "-r 200"
            first_page=first,
            last_page=last,
            output_folder=outdir,
            fmt="ppm",
            paths_only=True,
            timeout=remaining,
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


def _tiff_pages(
    data: bytes, *, max_pages: int, max_pixels: int, max_document_pixels: int
) -> list[Image.Image]:
    image = open_image(data, max_pixels=max_pixels)
    try:
        count = count_frames(image, max_pages)
    except Exception as exc:
        raise InputError(f"damaged TIFF page list: {exc}", code="corrupt_file") from exc
    if count is None:
        raise InputError(f"the TIFF has more than {max_pages} pages, the limit", code="too_many_pages")
    # every frame's size from its header first, so the document's budget is shared before decoding any
    sizes = []
    for index in range(count):
        _seek_frame(image, index)
        # Frames of one TIFF can each have their own size.
        check_pixels(image.size, max_pixels)
        check_min_side(image.size)
        sizes.append(image.size)
    factor = raster_scale(sizes, max_document_pixels)
    pages = []
    for index in range(count):
        _seek_frame(image, index)
        pages.append(shrink(decode_frame(image), factor))
    return pages


def _seek_frame(image: Image.Image, index: int) -> None:
    try:
        image.seek(index)
    except Exception as exc:
        raise InputError(f"damaged TIFF page {index + 1}: {exc}", code="corrupt_file") from exc


def shrink(image: Image.Image, factor: float) -> Image.Image:
    """`image` scaled by `factor` (sides rounded down), or itself when the factor is 1."""
    if factor >= 1:
        return image
    # reducing_gap: a fast integer box reduction first, then Lanczos over the last factor of 3 or less
    return image.resize(scaled_size(image.size, factor), Image.Resampling.LANCZOS, reducing_gap=3.0)
