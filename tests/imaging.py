"""Images and image files made for tests: one place for the helpers many test modules need."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from extractor import tesseract

# the tests that read pages with Debian's Tesseract (extractor/ocr.py) skip, saying why, where it is missing
needs_tesseract = pytest.mark.skipif(
    not tesseract.available(), reason="tesseract-ocr (libtesseract) not installed"
)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    """`image` saved in format `fmt` (PIL's name: PNG, JPEG, TIFF, ...)."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def noise(width: int, height: int, mode: str = "RGB", seed: int | None = None) -> Image.Image:
    """Random pixels, reproducible: the same arguments give the same image."""
    channels = len(Image.new(mode, (1, 1)).getbands())
    rng = np.random.default_rng(width * 7919 + height if seed is None else seed)
    shape = (height, width, channels) if channels > 1 else (height, width)
    return Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8))


def png(width: int = 448, height: int = 448, colour: str | tuple[int, int, int] = "white") -> bytes:
    """A plain one-colour PNG."""
    return encode(Image.new("RGB", (width, height), colour), "PNG")


def png_claiming_size(width: int, height: int) -> bytes:
    """A small, well-formed PNG whose header claims width × height: a decompression bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
        + chunk(b"IEND", b"")
    )


def many_directory_tiff(directories: int, side: int = 8) -> bytes:
    """A TIFF of `directories` pages (image file directories), all sharing one tiny grey strip: a few MB
    for tens of thousands of pages, the way a hostile upload would pack them."""
    strip_offset, strip = 8, bytes([128]) * (side * side)
    first_ifd = strip_offset + len(strip)
    tags = [  # (tag, type: 3 SHORT / 4 LONG, value), sorted by tag as TIFF requires
        (256, 3, side),  # ImageWidth
        (257, 3, side),  # ImageLength
        (258, 3, 8),  # BitsPerSample
        (259, 3, 1),  # Compression: none
        (262, 3, 1),  # PhotometricInterpretation: black is zero
        (273, 4, strip_offset),  # StripOffsets
        (277, 3, 1),  # SamplesPerPixel
        (278, 3, side),  # RowsPerStrip
        (279, 4, len(strip)),  # StripByteCounts
    ]
    ifd_size = 2 + 12 * len(tags) + 4
    entries = b"".join(
        struct.pack("<HHI", tag, kind, 1)
        + (struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value))
        for tag, kind, value in tags
    )
    ifds = []
    for index in range(directories):
        following = first_ifd + (index + 1) * ifd_size if index + 1 < directories else 0
        ifds.append(struct.pack("<H", len(tags)) + entries + struct.pack("<I", following))
    return b"II*\x00" + struct.pack("<I", first_ifd) + strip + b"".join(ifds)
