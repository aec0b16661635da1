"""Byte-stable encoders: the same image always gives the same PNG, JPEG or PDF bytes."""

from __future__ import annotations

import io

from PIL import Image

FORMATS = ("png", "jpeg", "pdf")
EXTENSIONS = {"png": ".png", "jpeg": ".jpg", "pdf": ".pdf"}


def encode_png(image: Image.Image) -> bytes:
    # Pillow writes no tIME/text chunks unless asked, so the bytes depend on the pixels alone
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


def encode_pdf(pages: list[Image.Image], dpi: int, quality: int) -> bytes:
    """One page per image, each page the image's physical size at `dpi`, images embedded as JPEG."""
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    # invariant=1 pins the creation date and document id, which otherwise change on every run
    pdf = canvas.Canvas(buffer, invariant=1, pageCompression=1)
    pdf.setCreator("bayou synthetic")
    for page in pages:
        width_pt, height_pt = page.width * 72 / dpi, page.height * 72 / dpi
        pdf.setPageSize((width_pt, height_pt))
        # handing reportlab JPEG bytes makes it embed them as-is (DCTDecode) instead of a huge Flate stream
        jpeg = ImageReader(io.BytesIO(encode_jpeg(page, quality)))
        pdf.drawImage(jpeg, 0, 0, width=width_pt, height=height_pt)
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def encode(pages: list[Image.Image], fmt: str, *, dpi: int, quality: int) -> list[bytes]:
    """The files for a document: one per page for PNG/JPEG, a single multi-page file for PDF."""
    if fmt == "png":
        return [encode_png(page) for page in pages]
    if fmt == "jpeg":
        return [encode_jpeg(page, quality) for page in pages]
    if fmt == "pdf":
        return [encode_pdf(pages, dpi, quality)]
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
