"""Decoding an uploaded image into a clean RGB PIL image, or refusing it with a typed InputError.

Refusals happen as early as possible: size limits are checked from the header (PIL's `Image.open` is lazy)
before any pixel is decoded, so a small file that claims to be enormous costs nothing.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError

from extractor.errors import InputError

# Phone photos arrive as HEIC; registering is idempotent and lets Image.open identify them like any format.
pillow_heif.register_heif_opener()

DEFAULT_MAX_PIXELS = 89_478_485  # PIL's own default bomb threshold, made explicit so no global decides it
MIN_SIDE = 8  # a strip thinner than this cannot hold anything readable; refusing says so plainly

_WHITE = (255, 255, 255, 255)
_ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})
_HIGH_DEPTH_MODES = frozenset({"I", "F", "I;16", "I;16L", "I;16B", "I;16N"})
_RESCALE_BAND_VALUES = 1 << 20  # values converted to float64 at a time (8 MB), whatever the image's size


def read_source(source: bytes | str | Path) -> bytes:
    """The raw bytes of an upload given as bytes or a path; unreadable paths become typed errors."""
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source)
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {source}: {exc.strerror or exc}", code="corrupt_file") from exc


def check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise InputError(
            f"image is {width}x{height} = {width * height} pixels, above the limit of {max_pixels}",
            code="too_many_pixels",
        )


def check_min_side(size: tuple[int, int]) -> None:
    width, height = size
    if min(width, height) < MIN_SIDE:
        raise InputError(
            f"image is {width}x{height}; each side must be at least {MIN_SIDE} pixels",
            code="unsupported_image",
        )


def open_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Identify `data` and check its header size; no pixels are decoded yet."""
    if not data:
        raise InputError("the file is empty", code="empty_file")
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        # PIL's own check reads a process-wide global (its warning is left alone: filtering warnings is not
        # thread-safe); our limit is `max_pixels`, checked below. Its error is still a refusal, in our terms.
        counted = re.search(r"\((\d+) pixels\)", str(exc))  # PIL names the size, then its own limit
        size = f"{int(counted[1])} pixels, " if counted else ""
        raise InputError(
            f"image has too many pixels ({size}above the limit of {max_pixels})", code="too_many_pixels"
        ) from exc
    except UnidentifiedImageError as exc:
        raise InputError("not an image in a supported format", code="unsupported_image") from exc
    except Exception as exc:  # a recognised header that is damaged: PIL raises many unrelated types here
        raise InputError(f"damaged image header: {exc}", code="corrupt_file") from exc
    check_pixels(image.size, max_pixels)
    check_min_side(image.size)
    return image


def count_frames(image: Image.Image, limit: int) -> int | None:
    """The number of frames (pages) of an opened image if it is at most `limit`, else None; the image is
    left on its first frame. Reads at most `limit` + 1 frame headers: PIL's `n_frames` reads every one
    before a caller can compare, and a few MB of TIFF can hold 40,000 page directories (seconds of CPU).
    Errors reading a frame header propagate (PIL raises many types on damage)."""
    count = 1
    try:
        while count <= limit:
            image.seek(count)  # one more directory read; EOFError: there is none
            count += 1
    except EOFError:
        return count
    finally:
        image.seek(0)
    return None


def decode_frame(image: Image.Image) -> Image.Image:
    """Decode the current frame of an opened image, upright and in RGB."""
    try:
        image.load()
    except Exception as exc:  # truncated data, bad compressed stream, decoder errors of every kind
        raise InputError(f"damaged or truncated image: {exc}", code="corrupt_file") from exc
    return normalize_image(upright(image))


def upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a broken EXIF block is not worth refusing a readable image for.

    Always returns a new image, so callers can seek the original to its next frame afterwards.
    """
    try:
        return ImageOps.exif_transpose(image)
    except Exception:
        return image.copy()


def load_image(source: bytes | str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode an image file (first frame if animated) into an upright RGB image, or raise InputError."""
    image = open_image(read_source(source), max_pixels=max_pixels)
    # Image.open leaves animated images (GIF, WebP, APNG) on their first frame already.
    return decode_frame(image)


def normalize_image(img: Image.Image) -> Image.Image:
    """Any decoded PIL image -> 8-bit RGB: transparency flattened onto white, deep images rescaled.

    Refuses (unsupported_image) images with a side under MIN_SIDE and modes PIL cannot convert.
    """
    check_min_side(img.size)
    try:
        if img.mode in _HIGH_DEPTH_MODES:
            return _rescale_to_8bit(img).convert("RGB")
        if img.mode in _ALPHA_MODES or "transparency" in img.info:
            return _flatten_on_white(img)
        if img.mode == "RGB":
            return img
        return img.convert("RGB")
    except Exception as exc:  # a mode PIL cannot convert (e.g. exotic raw modes)
        raise InputError(f"cannot convert {img.mode} image to RGB: {exc}", code="unsupported_image") from exc


def _flatten_on_white(img: Image.Image) -> Image.Image:
    # Transparent regions of scans and screenshots are meant as paper, so white, not black.
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, _WHITE)
    return Image.alpha_composite(background, rgba).convert("RGB")


def _rescale_to_8bit(img: Image.Image) -> Image.Image:
    """Stretch a 16/32-bit or float image's actual value range onto 0..255.

    Many 16-bit scans use only a slice of the nominal range; dividing by 257 would leave them dark and
    flat. A constant image has no range: it becomes black if its value is <= 0, white otherwise. NaN and
    infinities count as 0. The values stay in the image's own depth; float64 is used a band of rows at a
    time (a whole 4000x4000 image in float64 is 128 MB a copy, and the arithmetic made several).
    """
    values = np.asarray(img)  # uint16, int32 or float32, as PIL holds them
    out = np.empty(values.shape, dtype=np.uint8)
    low, high = _value_range(values)
    if high <= low:
        out.fill(255 if low > 0 else 0)
        return Image.fromarray(out)
    scale = 255.0 / (high - low)
    for rows, band in _float_bands(values):
        band -= low
        band *= scale
        np.rint(band, out=band)
        np.clip(band, 0, 255, out=band)
        out[rows] = band
    return Image.fromarray(out)


def _value_range(values: np.ndarray) -> tuple[float, float]:
    low, high = np.inf, -np.inf
    for _, band in _float_bands(values):
        low, high = min(low, float(band.min())), max(high, float(band.max()))
    return low, high


def _float_bands(values: np.ndarray) -> Iterator[tuple[slice, np.ndarray]]:
    """The image a band of rows at a time, as float64 with NaN and infinities made 0 (a fresh array)."""
    rows_per_band = max(1, _RESCALE_BAND_VALUES // max(1, values.shape[1]))
    for start in range(0, values.shape[0], rows_per_band):
        rows = slice(start, start + rows_per_band)
        band = values[rows].astype(np.float64)
        yield rows, np.nan_to_num(band, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
