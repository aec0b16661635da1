"""Word boxes of a page image from Tesseract (Debian's `tesseract-ocr`), run in a helper process
(extractor/tesseract.py).

Tesseract ships its English model in the Debian package, so nothing is fetched at run time; it runs on CPU
in the rasterising stage, never on the GPU worker. Why Tesseract and not RapidOCR: docs/benchmarks.md.
A page it cannot read, an empty page or a run past its time budget gives a PageWords with no words and a
status saying which, never an exception: grounding is then not applicable for that page.

Small print (a thermal receipt's 15-pixel capitals at 200 dpi) is below the text size Tesseract reads best:
it reads a lone "1" as "al" and a decimal point as a digit. Where the first pass leaves words it was unsure
of, the page is read a second time at twice the size, within what is left of the time budget, and each
unsure word is replaced by the words the second pass read more confidently in its place. A page photographed
a few degrees off is levelled first (extractor/deskew.py) and the boxes turned back onto the page as given;
then dark areas are inverted and rules painted over (extractor/ocr_cleanup.py), as Tesseract's one global
threshold loses faint print beside a dark table and words run into a check's lines and boxes.

A thermal print head's weak elements leave faint vertical streaks, and Tesseract reads a digit half gone
under one confidently as another ("20.24" for 20.34, confidence 0.91). So numeric words are read once more,
cut out and each column's ink darkened to the word's darkest (`column_contrast`), and what that reading
says, where it differs, is kept beside the word (`Word.alternatives`) for the locator, never in its place.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from extractor import tesseract
from extractor.deskew import box_back, rotated, skew_degrees
from extractor.ocr_cleanup import clean_page

# Page segmentation 6 (one uniform block of text): the automatic layout (3) dropped a receipt's amount
# column next to a dark table edge, and sparse text (11) splits "24.66" at the point; docs/benchmarks.md
PAGE_SEGMENTATION = 6
DEFAULT_TIMEOUT_S = 20.0
# words read with less confidence than this are looked at again in the second pass, at this scale
SECOND_PASS_BELOW = 0.7
SECOND_PASS_SCALE = 2
# no second pass for a page this large at twice the size: it has no small print to speak of (a 200 dpi
# letter page is 3.7 Mpx), and four times a page near BAYOU_MAX_PIXELS would not fit a worker's memory
SECOND_PASS_MAX_PIXELS = 40_000_000
# words still unsure after the second pass are cut out and read once more each on its own (one more Tesseract
# run for all of them, OcrSteps.reread_alone); at most this many a page, a cut-out under REREAD_SMALL_PX tall
# read at twice its size
REREAD_MAX_WORDS = 80
REREAD_SMALL_PX = 24
# numeric words (2+ digits, half the characters or more) read once more with each column's contrast restored
# (OcrSteps.alternatives), at most this many a page, at this scale, all in one more Tesseract run
ALTERNATIVE_MAX_WORDS = 100
ALTERNATIVE_SCALE = 2
# a column's ink is darkened at most this many times, and only where it is at least this share of the
# word's darkest (fainter: paper, noise)
_COLUMN_GAIN = 4.0
_COLUMN_INK = 0.15


@dataclass(frozen=True)
class Word:
    text: str
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in fractions of the page
    confidence: float  # Tesseract's, 0..1
    line: int  # words with the same number are one text line, in reading order
    # what another reading of the word's place said, where it differs (read_alternatives): the locator may
    # take one, at a lower score, where the value is not in the text
    alternatives: tuple[str, ...] = ()


@dataclass
class PageWords:
    """What OCR read on one page. `status`: ok, empty (no text found), unreadable, timeout, unavailable."""

    words: list[Word] = field(default_factory=list)
    status: str = "ok"
    ms: float = 0.0  # every pass
    passes: int = 1  # 2: read again at twice the size; 3: then unsure words read alone
    skew: float = 0.0  # degrees the page was turned by to level its lines before reading

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "ms": self.ms,
            "passes": self.passes,
            "skew": self.skew,
            # the alternatives, where there are any, as an eighth item
            "words": [
                [w.text, *w.box, w.confidence, w.line, *([list(w.alternatives)] if w.alternatives else [])]
                for w in self.words
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> PageWords:
        if not data:
            return cls(status="unavailable")
        # pages stored before the alternatives have seven items a word
        words = [
            Word(
                str(t),
                (float(x0), float(y0), float(x1), float(y1)),
                float(c),
                int(n),
                tuple(str(a) for a in (more[0] if more else ())),
            )
            for t, x0, y0, x1, y1, c, n, *more in data.get("words", [])
        ]
        return cls(
            words=words,
            status=str(data.get("status", "ok")),
            ms=float(data.get("ms", 0.0)),
            passes=int(data.get("passes", 1)),
            skew=float(data.get("skew", 0.0)),
        )


@dataclass(frozen=True)
class OcrSteps:
    """Which of OCR's steps run: all of them in bayou; a bench or a test switches one off to see what it
    gives (docs/benchmarks.md, "Grounding")."""

    # light text on dark areas turned dark, rules and dark surroundings painted over before reading:
    # Tesseract's one global threshold otherwise lost whole receipt rows photographed on a dark table
    clean_page: bool = True
    # a page with a word read with confidence under SECOND_PASS_BELOW read again at twice the size
    second_pass: bool = True
    # after it, words still unsure cut out and read each on its own
    reread_alone: bool = True
    # numeric words read once more with each column's contrast restored, the reading kept beside the word
    alternatives: bool = True


ALL_STEPS = OcrSteps()
ONE_PASS = OcrSteps(second_pass=False, reread_alone=False, alternatives=False)


def read_words(
    image: Image.Image, *, timeout_s: float = DEFAULT_TIMEOUT_S, steps: OcrSteps = ALL_STEPS
) -> PageWords:
    """The words on `image` with their boxes; never raises for a bad page (see the status)."""
    started = time.perf_counter()
    if not tesseract.available():
        return PageWords(status="unavailable")
    # grey with the contrast stretched: faded thermal print and tinted check paper read better
    grey = ImageOps.autocontrast(image.convert("L"), cutoff=1)
    skew = skew_degrees(grey)
    levelled = rotated(grey, skew) if skew else grey
    # dark areas inverted, rules and dark surroundings painted over (extractor/ocr_cleanup.py)
    page = clean_page(levelled) if steps.clean_page else levelled
    status, words = _tesseract(page, timeout_s)
    if status != "ok":
        return PageWords(status=status, ms=_ms(started), skew=skew)
    if not words:
        return PageWords(status="empty", ms=_ms(started), skew=skew)
    passes = 1
    left = timeout_s - (time.perf_counter() - started)
    larger = page.width * page.height * SECOND_PASS_SCALE**2
    if (
        steps.second_pass
        and left > 0
        and larger <= SECOND_PASS_MAX_PIXELS
        and any(w.confidence < SECOND_PASS_BELOW for w in words)
    ):
        passes = 2
        bigger = page.resize(
            (page.width * SECOND_PASS_SCALE, page.height * SECOND_PASS_SCALE), Image.Resampling.LANCZOS
        )
        status, again = _tesseract(bigger, left)
        # past the budget or unreadable at the larger size: the first pass's words stand
        words = merge_passes(words, again) if status == "ok" else words
        left = timeout_s - (time.perf_counter() - started)
        unsure = [w for w in words if w.confidence < SECOND_PASS_BELOW][:REREAD_MAX_WORDS]
        if steps.reread_alone and status == "ok" and unsure and left > 0:
            passes = 3
            status, alone = reread_alone(page, unsure, left)
            words = merge_passes(words, alone) if status == "ok" else words
    left = timeout_s - (time.perf_counter() - started)
    if steps.alternatives and left > 0:
        # past the budget: the words stand without alternatives
        words = read_alternatives(page, words, left)
    if skew:
        words = [replace(w, box=box_back(w.box, skew, grey.size, page.size)) for w in words]
    return PageWords(words=words, ms=_ms(started), passes=passes, skew=skew)


def reread_alone(page: Image.Image, unsure: list[Word], timeout_s: float) -> tuple[str, list[Word]]:
    """Each unsure word's place cut out with a margin and read on its own, all in one Tesseract run (the
    cut-outs stacked on a white strip); the words as page fractions of `page`. Read with its neighbours, a
    check's date in a larger script than the "DATE" label beside it came out as "\\e2v2023"; alone, right."""
    cuts = _cut_outs(page, unsure)
    if not cuts:
        return "ok", []
    strip, placed = _stacked(page, cuts)
    status, read = _tesseract(strip, timeout_s)
    if status != "ok":
        return status, []
    return "ok", _back_on_page(read, placed, strip.size, page.size)


def read_alternatives(page: Image.Image, words: list[Word], timeout_s: float) -> list[Word]:
    """`words`, each numeric one with what it reads as once cut out, at ALTERNATIVE_SCALE, with each column's
    ink darkened to the word's darkest (`column_contrast`), as an alternative where that differs; all cut-outs
    in one Tesseract run. A faint streak through a digit's strokes made Tesseract read 20.34 as "20.24"."""
    chosen = [n for n, word in enumerate(words) if _numeric(word.text)][:ALTERNATIVE_MAX_WORDS]
    cuts = {n: box for n in chosen if (box := _cut_box(page, words[n])) is not None}
    if not cuts:
        return words
    strip, placed = _stacked(page, [(box, ALTERNATIVE_SCALE) for box in cuts.values()], column_contrast)
    status, read = _tesseract(strip, timeout_s)
    if status != "ok":
        return words
    numbers = list(cuts)  # the word each cut-out is of, in the strip's order
    texts: dict[int, str] = {}
    for word in read:
        at = _cut_under(word, placed, strip.height)
        if at is not None:
            texts[numbers[at]] = texts.get(numbers[at], "") + word.text
    return [
        replace(word, alternatives=(texts[n],)) if texts.get(n, word.text) != word.text else word
        for n, word in enumerate(words)
    ]


def _numeric(text: str) -> bool:
    digits = sum(ch.isdigit() for ch in text)
    return digits >= 2 and 2 * digits >= len(text)


def column_contrast(piece: Image.Image) -> Image.Image:
    """`piece` (grey, a word on paper) with each pixel column's ink darkened by as much as makes the column's
    darkest pixel as dark as the piece's darkest, at most _COLUMN_GAIN times; a column whose darkest is
    fainter than _COLUMN_INK of the piece's ink depth (paper, noise) stays. A 3x3 median first, so that
    noise is not darkened with the ink."""
    pixels = np.asarray(piece.filter(ImageFilter.MedianFilter(3)), dtype=np.float32)
    paper = float(np.percentile(pixels, 90))
    full = paper - float(np.percentile(pixels, 1))
    if full <= 0:
        return piece
    depth = paper - pixels.min(axis=0)
    gain = np.where(depth > _COLUMN_INK * full, full / np.maximum(depth, 1.0), 1.0)
    darker = paper - np.maximum(0.0, paper - pixels) * np.minimum(gain, _COLUMN_GAIN)[None, :]
    return Image.fromarray(np.clip(darker, 0, 255).astype(np.uint8))


# (page pixels cut out, the scale it is read at)
_Cut = tuple[tuple[int, int, int, int], int]
_STRIP_GAP = 16  # white pixels around each cut-out on the strip


def _cut_outs(page: Image.Image, unsure: list[Word]) -> list[_Cut]:
    """Each word's box on `page` with half its height around it; a small one read at twice its size."""
    cuts: list[_Cut] = []
    for word in unsure:
        box = _cut_box(page, word)
        if box is not None:
            cuts.append((box, 2 if _height_px(page, word) < REREAD_SMALL_PX else 1))
    return cuts


def _height_px(page: Image.Image, word: Word) -> int:
    """The word's height on `page` in pixels, at least 1."""
    return max(1, round(word.box[3] * page.height) - round(word.box[1] * page.height))


def _cut_box(page: Image.Image, word: Word) -> tuple[int, int, int, int] | None:
    """The word's box on `page` in pixels with half its height around it; None when nothing is left."""
    x0, y0, x1, y1 = (round(v * size) for v, size in zip(word.box, page.size * 2, strict=True))
    height = _height_px(page, word)
    box = (
        max(0, x0 - height // 2),
        max(0, y0 - height // 2),
        min(page.width, x1 + height // 2),
        min(page.height, y1 + height // 2),
    )
    return box if box[2] > box[0] and box[3] > box[1] else None


def _stacked(
    page: Image.Image, cuts: list[_Cut], treat: Callable[[Image.Image], Image.Image] | None = None
) -> tuple[Image.Image, list[tuple[int, _Cut]]]:
    """The cut-outs one under another on a white strip, each with its top on the strip; `treat`: applied
    to each once scaled."""
    gap = _STRIP_GAP
    width = max((b[2] - b[0]) * k for b, k in cuts) + 2 * gap
    height = sum((b[3] - b[1]) * k + gap for b, k in cuts) + gap
    strip = Image.new("L", (width, height), 255)
    placed: list[tuple[int, _Cut]] = []
    top = gap
    for box, scale in cuts:
        piece = page.crop(box)
        if scale != 1:
            piece = piece.resize((piece.width * scale, piece.height * scale), Image.Resampling.LANCZOS)
        if treat is not None:
            piece = treat(piece)
        strip.paste(piece, (gap, top))
        placed.append((top, (box, scale)))
        top += piece.height + gap
    return strip, placed


def _back_on_page(
    read: list[Word], placed: list[tuple[int, _Cut]], strip_size: tuple[int, int], page_size: tuple[int, int]
) -> list[Word]:
    """The words read on the strip, each moved to its cut-out's place on the page (page fractions)."""
    width, height = strip_size
    words = []
    for word in read:
        at = _cut_under(word, placed, height)
        if at is None:
            continue
        top, (box, scale) = placed[at]
        xs = [(v * width - _STRIP_GAP) / scale + box[0] for v in (word.box[0], word.box[2])]
        ys = [(v * height - top) / scale + box[1] for v in (word.box[1], word.box[3])]
        fractions = (xs[0] / page_size[0], ys[0] / page_size[1], xs[1] / page_size[0], ys[1] / page_size[1])
        words.append(
            Word(word.text, tuple(round(v, 5) for v in fractions), word.confidence, word.line)  # type: ignore[arg-type]
        )
    return words


def _cut_under(word: Word, placed: list[tuple[int, _Cut]], strip_height: int) -> int | None:
    """Which cut-out on the strip a word read there belongs to (its vertical centre lies in it), if any."""
    centre = (word.box[1] + word.box[3]) / 2 * strip_height
    for at, (top, (box, scale)) in enumerate(placed):
        if top <= centre < top + (box[3] - box[1]) * scale:
            return at
    return None


def _tesseract(grey: Image.Image, timeout_s: float) -> tuple[str, list[Word]]:
    status, tsv = tesseract.read_tsv(grey, PAGE_SEGMENTATION, timeout_s)
    if status != "ok":
        return status, []
    return "ok", _parse_tsv(tsv, grey.width, grey.height)


def merge_passes(first: list[Word], second: list[Word]) -> list[Word]:
    """`first`, each word read with confidence under SECOND_PASS_BELOW replaced by the `second` pass's
    words in its place (overlapping half of the smaller box) when every one of them was read more
    confidently; the first pass's line numbers stay."""
    merged: list[Word] = []
    taken: set[int] = set()
    for word in first:
        if word.confidence < SECOND_PASS_BELOW:
            instead = [
                n for n, other in enumerate(second) if n not in taken and _same_place(word.box, other.box)
            ]
            if instead and all(second[n].confidence > word.confidence for n in instead):
                taken.update(instead)
                merged += [
                    Word(second[n].text, second[n].box, second[n].confidence, word.line) for n in instead
                ]
                continue
        merged.append(word)
    return merged


def _same_place(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return width * height > 0.5 * smaller


def _parse_tsv(tsv: str, width: int, height: int) -> list[Word]:
    words: list[Word] = []
    lines: dict[tuple[str, str, str, str], int] = {}
    rows = csv.DictReader(io.StringIO(tsv), tesseract.TSV_COLUMNS, delimiter="\t", quoting=csv.QUOTE_NONE)
    for row in rows:
        text = (row.get("text") or "").strip()
        if row.get("level") != "5" or not text:
            continue
        key = (row["page_num"], row["block_num"], row["par_num"], row["line_num"])
        line = lines.setdefault(key, len(lines))
        left, top = int(row["left"]), int(row["top"])
        right, bottom = left + int(row["width"]), top + int(row["height"])
        box = (left / width, top / height, right / width, bottom / height)
        words.append(Word(text, tuple(round(v, 5) for v in box), max(0.0, float(row["conf"])) / 100, line))  # type: ignore[arg-type]
    return words


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
