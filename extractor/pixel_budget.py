"""How large each page of a document may become: a cap per page and a budget for the whole document.

A document's pages are all held in memory at once (and PDF pages pass through temporary files first), so
the page cap alone does not bound what one upload costs: 20 blank PDF pages of 3,400 points are each just
under the page cap at 200 dpi and together ~1.8 Gpx. Pages are therefore planned before anything is
rendered or decoded: a PDF page gets the resolution that keeps it under the page cap, then every page of the
document is scaled by one common factor so that their sum stays within the budget. Raster images cannot be
planned before decoding, so they are decoded one at a time (each under the page cap) and shrunk at once.
A document that cannot be brought within the budget (a page would lose a side) is refused
`too_many_pixels`.
"""

from __future__ import annotations

import math

from extractor.errors import InputError
from extractor.images import MIN_SIDE

DEFAULT_MAX_DOCUMENT_PIXELS = 100_000_000  # ~300 MB as 8-bit RGB: 20 A4 or legal pages at 200 dpi fit whole
TOO_MANY_PIXELS = "too_many_pixels"
# pdftoppm rounds each side up (ceil of size x dpi / 72); planning for one pixel more per side covers it
_ROUNDING_PX = 1.0
_DPI_STEP = 100  # resolutions go to pdftoppm rounded down to 1/100 dpi


def pdf_page_dpis(
    sizes_in: list[tuple[float, float]], *, dpi: float, max_pixels: int, max_document_pixels: int
) -> list[float]:
    """The resolution to render each page at, given its size in inches: `dpi`, or less where a page
    would exceed `max_pixels` at it, then all scaled by one factor where their sum would exceed
    `max_document_pixels`. InputError `too_many_pixels` when a page would end up thinner than MIN_SIDE."""
    planned = [min(dpi, _dpi_for(width, height, max_pixels)) for width, height in sizes_in]
    factor = _document_factor(sizes_in, planned, max_document_pixels)
    dpis = [math.floor(value * factor * _DPI_STEP) / _DPI_STEP for value in planned]
    for number, ((width, height), value) in enumerate(zip(sizes_in, dpis, strict=True), start=1):
        reduced = value < dpi
        if reduced and min(width, height) * value < MIN_SIDE:
            raise InputError(
                f"page {number} cannot be rendered within the pixel limits ({max_pixels} a page, "
                f"{max_document_pixels} a document) and stay readable",
                code=TOO_MANY_PIXELS,
            )
    return dpis


def raster_scale(sizes: list[tuple[int, int]], max_document_pixels: int) -> float:
    """The factor (at most 1) to shrink every decoded page by so the document fits `max_document_pixels`
    (sides rounded down); InputError `too_many_pixels` when a page would end up thinner than MIN_SIDE."""
    total = sum(width * height for width, height in sizes)
    if total <= max_document_pixels:
        return 1.0
    factor = math.sqrt(max(max_document_pixels, 0) / total)
    if any(min(scaled_size(size, factor)) < MIN_SIDE for size in sizes):
        raise InputError(
            f"the document has {total} pixels, above the limit of {max_document_pixels}, "
            "and cannot be shrunk to fit",
            code=TOO_MANY_PIXELS,
        )
    return factor


def scaled_size(size: tuple[int, int], factor: float) -> tuple[int, int]:
    width, height = size
    return math.floor(width * factor), math.floor(height * factor)


def planned_pixels(width_in: float, height_in: float, dpi: float) -> float:
    """An upper bound on the pixels pdftoppm renders a page of this size at `dpi`."""
    return (width_in * dpi + _ROUNDING_PX) * (height_in * dpi + _ROUNDING_PX)


def _dpi_for(width_in: float, height_in: float, max_pixels: int) -> float:
    # the largest d with (w d + r)(h d + r) <= max_pixels: w h d^2 + r (w + h) d + r^2 - max_pixels = 0
    limit = max_pixels - _ROUNDING_PX * _ROUNDING_PX
    return (
        _positive_root(width_in * height_in, _ROUNDING_PX * (width_in + height_in), limit)
        if limit > 0
        else 0.0
    )


def _document_factor(sizes_in: list[tuple[float, float]], dpis: list[float], budget: int) -> float:
    """The largest k <= 1 with the pages at k x their dpi summing to at most `budget` pixels."""
    if sum(planned_pixels(w, h, d) for (w, h), d in zip(sizes_in, dpis, strict=True)) <= budget:
        return 1.0
    # sum of (w k d + r)(h k d + r) = a k^2 + b k + c
    a = sum(w * h * d * d for (w, h), d in zip(sizes_in, dpis, strict=True))
    b = sum(_ROUNDING_PX * (w + h) * d for (w, h), d in zip(sizes_in, dpis, strict=True))
    c = len(dpis) * _ROUNDING_PX * _ROUNDING_PX
    if c >= budget:
        raise InputError(f"{len(dpis)} pages cannot share a budget of {budget} pixels", code=TOO_MANY_PIXELS)
    return min(1.0, _positive_root(a, b, budget - c + 0.0))


def _positive_root(a: float, b: float, limit: float) -> float:
    """The positive x with a x^2 + b x = limit (a, b >= 0, not both 0; limit > 0)."""
    if a == 0:
        return limit / b
    return (-b + math.sqrt(b * b + 4 * a * limit)) / (2 * a)
