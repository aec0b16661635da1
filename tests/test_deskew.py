"""Levelling a page photographed a few degrees off before OCR (extractor/deskew.py, extractor/ocr.py)."""

from __future__ import annotations

import pytest
from PIL import Image, ImageDraw

from bayou.synthetic.common import font
from extractor.deskew import box_back, rotated, skew_degrees
from extractor.grounding.measure import iou
from extractor.ocr import read_words
from tests.imaging import needs_tesseract

LINES = [
    "SHARP CHEDDAR 8OZ    3.79",
    "VANILLA ICE CREAM    5.52",
    "LARGE EGGS 12CT      2.53",
    "TOTAL  $26.26",
]


def _receipt() -> tuple[Image.Image, dict[str, tuple[int, int, int, int]]]:
    """A level page of receipt lines (mono, 22 px) and the ink box of each line's last word."""
    page = Image.new("L", (700, 420), 255)
    draw = ImageDraw.Draw(page)
    face = font("mono", 22)
    boxes = {}
    for n, line in enumerate(LINES):
        at = (60, 60 + n * 70)
        draw.text(at, line, font=face, fill=20)
        last = line.split()[-1]
        boxes[last] = draw.textbbox(
            (at[0] + face.getlength(line[: line.rindex(last)]), at[1]), last, font=face
        )
    return page, boxes


def test_a_tilted_page_is_measured_and_a_level_or_blank_one_left_alone() -> None:
    page, _ = _receipt()
    assert skew_degrees(page) == 0.0
    assert skew_degrees(Image.new("L", (700, 420), 255)) == 0.0
    assert skew_degrees(rotated(page, 2.5)) == pytest.approx(-2.5, abs=0.25)
    assert skew_degrees(rotated(page, -1.75)) == pytest.approx(1.75, abs=0.25)
    # under MIN_DEGREES: left as it is
    assert skew_degrees(rotated(page, 0.5)) == 0.0


def test_a_box_on_the_levelled_page_is_turned_back_onto_the_page_as_given() -> None:
    page = Image.new("L", (400, 300), 255)
    ImageDraw.Draw(page).rectangle((100, 50, 140, 70), fill=0)
    turned = rotated(page, 3.0)
    x0, y0, x1, y1 = Image.eval(turned, lambda v: 255 - v).getbbox()
    back = box_back(
        (x0 / turned.width, y0 / turned.height, x1 / turned.width, y1 / turned.height),
        3.0,
        page.size,
        turned.size,
    )
    pixels = (back[0] * 400, back[1] * 300, back[2] * 400, back[3] * 300)
    # the bounds of the turned-back corners hold the square, a few pixels wider at most
    assert pixels[0] <= 100 <= pixels[0] + 4 and pixels[2] - 4 <= 141 <= pixels[2]
    assert pixels[1] <= 50 <= pixels[1] + 4 and pixels[3] - 4 <= 71 <= pixels[3]


@needs_tesseract
def test_ocr_reads_a_tilted_page_level_and_boxes_its_words_where_they_are() -> None:
    page, boxes = _receipt()
    tilted = rotated(page, 2.5)  # canvas grows; the drawn boxes move with the page
    words = read_words(tilted.convert("RGB"))
    assert words.skew == pytest.approx(-2.5, abs=0.25)
    by_text = {w.text: w for w in words.words}
    assert by_text["TOTAL"].line == by_text["$26.26"].line != by_text["3.79"].line
    # where "3.79" is on the tilted page: its drawn box turned with the page
    drawn = boxes["3.79"]
    level = (drawn[0] / 700, drawn[1] / 420, drawn[2] / 700, drawn[3] / 420)
    expected = box_back(level, -2.5, tilted.size, page.size)
    assert iou(by_text["3.79"].box, expected) >= 0.5
