"""The page clean-up before OCR (extractor/ocr_cleanup.py): dark areas inverted, long dark runs (rules, box
edges, a dark table around the paper) painted the paper's shade, glyph strokes left alone."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from extractor import ocr
from extractor.ocr import Word, read_words
from extractor.ocr_cleanup import clean_page, long_runs
from tests.imaging import needs_tesseract

PAPER = 230


def _page(width: int = 400, height: int = 300) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("L", (width, height), PAPER)
    return image, ImageDraw.Draw(image)


def test_a_rule_and_a_box_are_painted_over_and_glyph_strokes_stay() -> None:
    image, draw = _page()
    draw.rectangle((20, 150, 380, 151), fill=20)  # an underline
    draw.rectangle((250, 40, 370, 90), outline=20, width=2)  # an amount's box
    draw.rectangle((60, 120, 63, 145), fill=20)  # a glyph's stroke, above the underline
    draw.rectangle((290, 55, 293, 75), fill=20)  # a stroke inside the box
    out = np.asarray(clean_page(image))
    assert out[150:152, 20:381].min() >= PAPER - 5
    assert out[40:42, 250:371].min() >= PAPER - 5 and out[40:91, 250:252].min() >= PAPER - 5
    assert out[120:146, 60:64].max() <= 20 and out[55:76, 290:294].max() <= 20


def test_light_text_on_a_dark_band_becomes_dark_text_on_light() -> None:
    image, draw = _page(400, 300)
    draw.rectangle((0, 0, 399, 119), fill=40)  # a licence's header band
    draw.rectangle((150, 45, 155, 74), fill=250)  # a white stroke in it
    out = np.asarray(clean_page(image))
    assert out[30:90, 100:140].min() > 170  # the band is light now
    assert out[46:74, 151:155].max() < 60  # the stroke dark
    assert np.array_equal(out[200:, :], np.asarray(image)[200:, :])  # the paper below as it was


def test_a_page_of_short_strokes_is_left_as_it_is() -> None:
    image, draw = _page()
    for x in range(20, 380, 12):
        draw.rectangle((x, 100, x + 3, 118), fill=30)
    assert np.array_equal(np.asarray(clean_page(image)), np.asarray(image))


def test_long_runs_are_the_runs_at_least_that_long() -> None:
    rng = np.random.default_rng(7)
    mask = rng.random((30, 60)) < 0.8
    got = long_runs(mask, 5, axis=1)
    expected = np.zeros_like(mask)
    for row in range(mask.shape[0]):
        for start in range(mask.shape[1] - 4):
            if mask[row, start : start + 5].all():
                expected[row, start : start + 5] = True
    assert np.array_equal(got, expected)
    assert np.array_equal(long_runs(mask.T, 5, axis=0), expected.T)


def test_tesseract_gets_the_cleaned_page_and_boxes_stay_on_the_page(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Image.Image] = []

    def fake(grey: Image.Image, timeout_s: float) -> tuple[str, list[Word]]:
        seen.append(grey)
        return "ok", [Word("TOTAL", (0.1, 0.1, 0.3, 0.2), 0.9, 0)]

    monkeypatch.setattr(ocr.tesseract, "available", lambda: True)
    monkeypatch.setattr(ocr, "_tesseract", fake)
    image, draw = _page()
    draw.rectangle((0, 0, 20, 20), fill=0)  # autocontrast's black point
    draw.rectangle((20, 150, 380, 151), fill=0)
    words = read_words(image)
    assert np.asarray(seen[0])[150:152, 30:370].min() > 200
    assert words.words == [Word("TOTAL", (0.1, 0.1, 0.3, 0.2), 0.9, 0)]
    seen.clear()
    read_words(image, steps=ocr.OcrSteps(clean_page=False))
    assert np.asarray(seen[0])[150:152, 30:370].max() < 50


@needs_tesseract
def test_faint_rows_beside_a_dark_table_are_read() -> None:
    """A receipt photographed on a dark table: Tesseract's one threshold falls between table and paper, and
    grey print on the paper vanished altogether before the clean-up."""
    font = ImageFont.truetype("DejaVuSansMono.ttf", 16)
    image = Image.new("L", (700, 500), 35)
    draw = ImageDraw.Draw(image)
    draw.rectangle((200, 60, 500, 440), fill=228)
    rows = ["GREEK YOGURT 1.22", "DISH SOAP 3.46", "GREEN TEA 4.47", "RED GRAPES 11.02", "FROZEN PIZZA 6.60"]
    for n, row in enumerate(rows):
        draw.text((215, 90 + 60 * n), row, fill=150, font=font)
    text = " ".join(w.text for w in read_words(image, steps=ocr.ONE_PASS).words)
    for row in rows:
        assert row in text
