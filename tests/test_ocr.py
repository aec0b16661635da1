"""OCR word boxes (extractor/ocr.py): the real Tesseract on small drawn pages, and its failure modes."""

from __future__ import annotations

import pytest
from PIL import Image, ImageDraw

from bayou.synthetic.common import font
from extractor import ocr
from extractor.ocr import PageWords, read_words
from tests.imaging import needs_tesseract


def _page(lines: list[tuple[str, tuple[int, int]]], size: tuple[int, int] = (640, 240)) -> Image.Image:
    page = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(page)
    for text, at in lines:
        draw.text(at, text, font=font("mono", 28), fill=(30, 30, 30))
    return page


@needs_tesseract
def test_words_come_with_their_boxes_in_page_fractions() -> None:
    page = _page([("SUBTOTAL 24.66", (40, 40)), ("TOTAL $26.26", (40, 140))])
    words = read_words(page)
    assert words.status == "ok"
    by_text = {w.text: w for w in words.words}
    assert {"SUBTOTAL", "24.66", "TOTAL", "$26.26"} <= by_text.keys()
    x0, y0, x1, y1 = by_text["$26.26"].box
    # drawn at x 40 + 6 characters of a 28 px mono face (~17 px each), y 140..~170
    assert 0.20 < x0 < 0.26 and 0.55 < y0 < 0.64 and x1 < 0.45 and y1 < 0.75
    assert by_text["SUBTOTAL"].line == by_text["24.66"].line != by_text["TOTAL"].line
    assert 0 < by_text["TOTAL"].confidence <= 1


@needs_tesseract
def test_an_empty_page_is_empty_not_an_error() -> None:
    assert read_words(Image.new("RGB", (300, 200), "white")).status == "empty"


@needs_tesseract
def test_a_page_past_its_time_budget_is_cut_off_and_said_so() -> None:
    words = read_words(_page([("TOTAL 26.26", (40, 40))]), timeout_s=0.001)
    assert (words.status, words.words) == ("timeout", [])


def test_no_engine_installed_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ocr.tesseract, "available", lambda: False)
    assert read_words(Image.new("RGB", (10, 10))).status == "unavailable"


def test_words_survive_their_json_form() -> None:
    words = PageWords(words=[ocr.Word("26.26", (0.1, 0.2, 0.3, 0.4), 0.9, 3)], status="ok", ms=12.5)
    again = PageWords.from_json(words.to_json())
    assert again == words
    assert PageWords.from_json(None).status == "unavailable"
