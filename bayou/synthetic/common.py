"""Shared pieces of the generators: seeded randomness, fonts, money and the document container."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

CENT = Decimal("0.01")

# Only the faces shipped by Debian's fonts-dejavu-core, so CI needs one small package; the slanted
# "handwriting" look is made with an affine shear instead of an italic face.
_FONT_FILES = {
    "sans": "DejaVuSans.ttf",
    "sans-bold": "DejaVuSans-Bold.ttf",
    "mono": "DejaVuSansMono.ttf",
    "mono-bold": "DejaVuSansMono-Bold.ttf",
    "serif": "DejaVuSerif.ttf",
    "serif-bold": "DejaVuSerif-Bold.ttf",
}
_FONT_DIRS = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/dejavu"),
    Path("/usr/local/share/fonts"),
    Path("/Library/Fonts"),
)

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
# how a document was digitised: "scan" (flatbed, clean, lossless-friendly) or "photo" (phone camera)
CAPTURES = ("scan", "photo")


@dataclass
class SyntheticDocument:
    """One generated document: its type, the exact ground truth and one image per page/side."""

    doc_type: str
    ground_truth: dict[str, Any]
    pages: list[Image.Image] = field(default_factory=list)
    # where each field was drawn: JSON pointer -> {"page": 1-based, "box": [x0, y0, x1, y1] page fractions}
    boxes: dict[str, dict[str, Any]] = field(default_factory=dict)


def page_boxes(boxes: dict[str, list[float]], *, page: int) -> dict[str, dict[str, Any]]:
    """Boxes of one page in the metadata form."""
    return {pointer: {"page": page, "box": box} for pointer, box in boxes.items()}


def document_rng(seed: int, doc_type: str, index: int) -> random.Random:
    """An independent stream per document, so adding documents of one type never shifts another's."""
    # a str seed is hashed with SHA-512 by `random`, which (unlike hash()) is stable across runs
    return random.Random(f"bayou-synthetic:{seed}:{doc_type}:{index}")


def numpy_rng(rng: random.Random) -> np.random.Generator:
    """A numpy Generator that follows deterministically from `rng`."""
    return np.random.default_rng(rng.getrandbits(64))


@lru_cache(maxsize=128)
def font(role: str, size: int) -> Font:
    """The TrueType face for `role` ("sans", "mono-bold", ...) at `size` px, or PIL's built-in one."""
    name = _FONT_FILES[role]
    for folder in _FONT_DIRS:
        candidate = folder / name
        if candidate.is_file():
            return ImageFont.truetype(str(candidate), size)
    return ImageFont.load_default(size=size)


def money(value: Decimal) -> str:
    """The schema's money format: a plain decimal with two places."""
    return str(value.quantize(CENT, rounding=ROUND_HALF_UP))


def to_cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def ink_box(
    xy: tuple[float, float], text: str, face: Font, anchor: str | None = None
) -> tuple[float, float, float, float]:
    """The box around the ink that `ImageDraw.text(xy, text, font=face, anchor=anchor)` leaves.

    Pillow's `textbbox` spans each glyph's advance horizontally, so a receipt's "1" gets its 13 px cell
    for 10 px of ink; OCR boxes (and a reader's eye) are the ink. The text is drawn alone on a small mask at
    the same sub-pixel offset; text with no ink (spaces) keeps its `textbbox`."""
    cell = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox(xy, text, font=face, anchor=anchor)
    pad = 4 + int(getattr(face, "size", 0)) // 4  # room for ink that overhangs the cell
    # whole-pixel shift into the mask, so the fraction of xy (which Pillow renders with) is kept
    dx, dy = pad - int(cell[0] // 1), pad - int(cell[1] // 1)
    mask = Image.new("L", (int(cell[2] - cell[0]) + 2 * pad + 2, int(cell[3] - cell[1]) + 2 * pad + 2), 0)
    ImageDraw.Draw(mask).text((xy[0] + dx, xy[1] + dy), text, font=face, fill=255, anchor=anchor)
    ink = mask.getbbox()
    if ink is None:
        return cell
    return (ink[0] - dx, ink[1] - dy, ink[2] - dx, ink[3] - dy)


def draw_slanted_text(
    canvas: Image.Image,
    xy: tuple[int, int],
    text: str,
    face: Font,
    ink: tuple[int, int, int],
    slant: float = 0.25,
) -> tuple[int, int, int, int] | None:
    """Text sheared to the right, the nearest to handwriting that a sans-serif face offers; returns the
    box around its ink on the canvas (None for no ink)."""
    left, top, right, bottom = face.getbbox(text)
    height = int(bottom) + 4
    width = int(right) + int(slant * height) + 4
    mask = Image.new("L", (width, height), 0)
    ImageDraw.Draw(mask).text((2, 0), text, font=face, fill=255)
    # x_src = x + slant * (y - height) leans the top of the glyphs to the right
    sheared = mask.transform(
        mask.size, Image.Transform.AFFINE, (1, slant, -slant * height, 0, 1, 0), Image.Resampling.BICUBIC
    )
    canvas.paste(Image.new("RGB", sheared.size, ink), xy, sheared)
    ink_box = sheared.getbbox()
    if ink_box is None:
        return None
    return (ink_box[0] + xy[0], ink_box[1] + xy[1], ink_box[2] + xy[0], ink_box[3] + xy[1])
