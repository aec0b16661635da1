"""A page's skew (a receipt photographed a few degrees off), measured and undone before OCR.

Tesseract's single-block layout (extractor/ocr.py) reads lines as horizontal: on a receipt photographed
2.5 degrees off, a line drifts by a whole line's height across the roll and the rows run into each other.
The skew is the angle at which the page's ink, summed along rows, changes most sharply from row to row
(text lines then lie along the rows); ink is what is darker than its neighbourhood, so the dark table a
page was photographed on does not count, only its edge.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageFilter

MAX_DEGREES = 4.0
# a skew under this leaves the page as it is: Tesseract finds such lines itself, and turning the page
# resamples it (on 60 documents, turning pages 0.5-0.9 degrees off lost about as many values as it found)
MIN_DEGREES = 1.0
_WORK_WIDTH = 600  # the angle is measured on a copy this wide


def skew_degrees(grey: Image.Image) -> float:
    """The angle (degrees, counter-clockwise) to rotate `grey` by to level its text lines; 0.0 for a
    page level within MIN_DEGREES or one with too little ink to tell."""
    scale = min(1.0, _WORK_WIDTH / grey.width)
    small = grey.resize((max(1, round(grey.width * scale)), max(1, round(grey.height * scale))))
    local = small.filter(ImageFilter.BoxBlur(8))
    ink = (np.asarray(local, dtype=np.int16) - np.asarray(small, dtype=np.int16)) > 25
    if ink.mean() < 0.002:
        return 0.0
    mask = Image.fromarray((ink * 255).astype(np.uint8))

    def sharpness(degrees: float) -> float:
        rows = np.asarray(mask.rotate(degrees, expand=True), dtype=np.float32).sum(axis=1)
        return float(np.square(np.diff(rows)).sum())

    coarse = max(np.arange(-MAX_DEGREES, MAX_DEGREES + 0.01, 0.5), key=sharpness)
    best = max(np.arange(coarse - 0.375, coarse + 0.376, 0.125), key=sharpness)
    return 0.0 if abs(best) < MIN_DEGREES else round(float(best), 3)


def rotated(grey: Image.Image, degrees: float) -> Image.Image:
    """`grey` rotated counter-clockwise by `degrees` onto a white canvas large enough to hold it."""
    return grey.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=255)


def box_back(
    box: tuple[float, float, float, float], degrees: float, size: tuple[int, int], turned: tuple[int, int]
) -> tuple[float, float, float, float]:
    """A box in page fractions of the `rotated` page (size `turned`) as page fractions of the original
    (size `size`): the bounds of its four corners turned back."""
    angle = math.radians(degrees)
    cos, sin = math.cos(angle), math.sin(angle)
    (width, height), (wide, high) = size, turned
    xs, ys = [], []
    for fx, fy in ((box[0], box[1]), (box[2], box[1]), (box[2], box[3]), (box[0], box[3])):
        dx, dy = fx * wide - wide / 2, fy * high - high / 2
        # PIL turns (dx, dy) about the centre to (dx cos + dy sin, -dx sin + dy cos); this is its inverse
        xs.append((dx * cos - dy * sin + width / 2) / width)
        ys.append((dx * sin + dy * cos + height / 2) / height)
    return (
        round(min(1.0, max(0.0, min(xs))), 5),
        round(min(1.0, max(0.0, min(ys))), 5),
        round(min(1.0, max(0.0, max(xs))), 5),
        round(min(1.0, max(0.0, max(ys))), 5),
    )
