"""Word boxes of a page image from Tesseract (Debian's `tesseract-ocr`), run as a subprocess.

Tesseract ships its English model in the Debian package, so nothing is fetched at run time; it runs on CPU
in the rasterising stage, never on the GPU worker. Why Tesseract and not RapidOCR: docs/benchmarks.md.
A page it cannot read, an empty page or a run past its time budget gives a PageWords with no words and a
status saying which, never an exception: grounding is then not applicable for that page.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageOps

# Page segmentation 6 (one uniform block of text): the automatic layout (3) dropped a receipt's amount
# column next to a dark table edge, and sparse text (11) splits "24.66" at the point; docs/benchmarks.md
PAGE_SEGMENTATION = "6"
DEFAULT_TIMEOUT_S = 20.0
# Tesseract's own threads: one, so that two pages on a 2-core machine run side by side without oversubscribing
_ENV = {**os.environ, "OMP_THREAD_LIMIT": "1"}


@dataclass(frozen=True)
class Word:
    text: str
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in fractions of the page
    confidence: float  # Tesseract's, 0..1
    line: int  # words with the same number are one text line, in reading order


@dataclass
class PageWords:
    """What OCR read on one page. `status`: ok, empty (no text found), unreadable, timeout, unavailable."""

    words: list[Word] = field(default_factory=list)
    status: str = "ok"
    ms: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "ms": self.ms,
            "words": [[w.text, *w.box, w.confidence, w.line] for w in self.words],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> PageWords:
        if not data:
            return cls(status="unavailable")
        words = [
            Word(str(t), (float(x0), float(y0), float(x1), float(y1)), float(c), int(n))
            for t, x0, y0, x1, y1, c, n in data.get("words", [])
        ]
        return cls(words=words, status=str(data.get("status", "ok")), ms=float(data.get("ms", 0.0)))


def read_words(image: Image.Image, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> PageWords:
    """The words on `image` with their boxes; never raises for a bad page (see the status)."""
    started = time.perf_counter()
    binary = shutil.which("tesseract")
    if binary is None:
        return PageWords(status="unavailable")
    buffer = io.BytesIO()
    # grey with the contrast stretched: faded thermal print and tinted check paper read better
    ImageOps.autocontrast(image.convert("L"), cutoff=1).save(buffer, format="PNG", compress_level=1)
    try:
        run = subprocess.run(
            [binary, "stdin", "stdout", "--psm", PAGE_SEGMENTATION, "tsv"],
            input=buffer.getvalue(),
            capture_output=True,
            timeout=timeout_s,
            env=_ENV,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return PageWords(status="timeout", ms=_ms(started))
    if run.returncode != 0:
        return PageWords(status="unreadable", ms=_ms(started))
    words = _parse_tsv(run.stdout.decode("utf-8", "replace"), image.width, image.height)
    return PageWords(words=words, status="ok" if words else "empty", ms=_ms(started))


def _parse_tsv(tsv: str, width: int, height: int) -> list[Word]:
    words: list[Word] = []
    lines: dict[tuple[str, str, str, str], int] = {}
    for row in csv.DictReader(io.StringIO(tsv), delimiter="\t", quoting=csv.QUOTE_NONE):
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
