"""A page made plainer for Tesseract before it is read: light text on dark areas turned dark on light, and
rules, boxes and dark surroundings painted over with the paper's shade.

Tesseract binarises a page with one global (Otsu) threshold. A receipt photographed on a dark table gives
that threshold two modes to split, table and paper, so faint thermal print falls on the paper's side and
whole rows vanish (one 30-item receipt lost 31 of its 59 values that way); a check's amount box, its
underlines and a licence's dark header band break lines and words apart. So, on the levelled grey page:

1. dark areas (where most of a neighbourhood about a rule's length across is darker than INK_LEVEL) are
   inverted: a licence's header band becomes light with its white "USA" dark, a table becomes light;
2. what is still dark in a run at least a rule's length long, across or down (a rule, a box's edge, the
   edge of a dark area, a barcode's bars), is painted the paper's shade. A glyph's stroke is far shorter.

A rule's length is a twelfth of the page's shorter side, at least MIN_RULE_PX. The paper's shade is the
page's 90th percentile of grey. Pages over MAX_PIXELS are left as they are (a worker's memory).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

INK_LEVEL = 170  # grey darker than this (or than 3/4 of the paper's shade, if lower) is ink
MIN_RULE_PX = 40
DARK_AREA = 0.6  # the share of dark pixels that makes a neighbourhood a dark area
MAX_PIXELS = 20_000_000
_CELL = 4  # dark areas are found on a grid of cells this many pixels across


def clean_page(grey: Image.Image) -> Image.Image:
    """`grey` ("L") with dark areas inverted and long dark runs painted the paper's shade; same size."""
    if grey.width * grey.height > MAX_PIXELS or min(grey.size) < 2 * MIN_RULE_PX:
        return grey
    pixels = np.asarray(grey.convert("L"))
    paper = float(np.percentile(pixels, 90))
    level = min(float(INK_LEVEL), 0.75 * paper)
    rule = max(MIN_RULE_PX, min(pixels.shape) // 12)
    out = pixels.copy()
    area = _dark_areas(pixels < level, rule)
    out[area] = 255 - pixels[area]
    dark = out < level
    runs = long_runs(dark, rule, axis=1) | long_runs(dark, rule, axis=0)
    out[_grown(runs)] = int(paper)
    return Image.fromarray(out)


def _dark_areas(dark: np.ndarray, rule: int) -> np.ndarray:
    height, width = dark.shape
    rows, cols = -(-height // _CELL), -(-width // _CELL)
    padded = np.zeros((rows * _CELL, cols * _CELL), dtype=np.float32)
    padded[:height, :width] = dark
    share = padded.reshape(rows, _CELL, cols, _CELL).mean(axis=(1, 3))
    cells = Image.fromarray((share * 255).astype(np.uint8)).filter(
        ImageFilter.BoxBlur(max(1, rule // (2 * _CELL)))
    )
    full = cells.resize((cols * _CELL, rows * _CELL), Image.Resampling.BILINEAR)
    return np.asarray(full)[:height, :width] > DARK_AREA * 255


def long_runs(mask: np.ndarray, length: int, *, axis: int) -> np.ndarray:
    """The pixels of boolean `mask` that lie in a run of at least `length` True pixels along `axis`
    (1: across, 0: down)."""
    grid = mask if axis == 1 else mask.T
    height, width = grid.shape
    if width < length:
        return np.zeros_like(mask, dtype=bool)
    counts = np.zeros((height, width + 1), dtype=np.int32)
    np.cumsum(grid, axis=1, out=counts[:, 1:])
    full = (counts[:, length:] - counts[:, :-length]) == length  # the window starting here is all True
    starts = np.zeros((height, full.shape[1] + 1), dtype=np.int32)
    np.cumsum(full, axis=1, out=starts[:, 1:])
    at = np.arange(width)
    first = np.clip(at - length + 1, 0, full.shape[1])
    last = np.clip(at + 1, 0, full.shape[1])  # windows first..last-1 cover pixel `at`
    covered = (starts[:, last] - starts[:, first]) > 0
    return covered if axis == 1 else covered.T


def _grown(mask: np.ndarray) -> np.ndarray:
    """`mask` and its four neighbours: a rule's anti-aliased edge goes with it."""
    grown = mask.copy()
    grown[1:] |= mask[:-1]
    grown[:-1] |= mask[1:]
    grown[:, 1:] |= mask[:, :-1]
    grown[:, :-1] |= mask[:, 1:]
    return grown
