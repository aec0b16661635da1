"""Numeric words read once more with each column's contrast restored (extractor/ocr.py read_alternatives),
kept beside the word, and the locator taking such a reading where the word's text is not the value."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from bayou.synthetic.common import font
from extractor import ocr
from extractor.grounding.locate import locate
from extractor.grounding.verify import FOUND, not_on_page
from extractor.ocr import PageWords, Word, column_contrast, read_words
from tests.imaging import needs_tesseract

_LINES = (
    "PEANUT BUTTER        20.34",
    "  6 @ 3.39",
    "BROCCOLI CROWNS       4.17",
    "GREEN TEA 20CT        4.88",
)


def _streaked_receipt() -> Image.Image:
    """Thermal print lines in the generator's mono face, with a print head's faint streak (the ink at half
    strength over 6 px) through the first "8" of 4.88, as bayou/synthetic/receipt_render.py `_thermal` does."""
    face = font("mono", 16)
    mask = Image.new("L", (420, 40 + 28 * len(_LINES)), 0)
    draw = ImageDraw.Draw(mask)
    for row, text in enumerate(_LINES):
        draw.text((20, 20 + 28 * row), text, font=face, fill=255)
    streak = np.ones(mask.width, dtype=np.float32)
    column = int(20 + face.getlength("GREEN TEA 20CT        4."))
    streak[column - 3 : column + 3] = 0.5
    ink = np.asarray(mask, dtype=np.float32) / 255 * streak[None, :]
    return Image.fromarray((236 * (1 - ink) + 50 * ink).astype(np.uint8))


@needs_tesseract
def test_a_streaked_amount_misread_confidently_is_found_by_its_other_reading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    image = _streaked_receipt()
    before = read_words(image, steps=ocr.OcrSteps(alternatives=False))
    # one reading: the streaked 8 read as another digit, and the amount is flagged not on the page
    assert "4.88" not in [w.text for w in before.words]
    assert not_on_page({"total": "4.88"}, locate({"total": "4.88"}, [before])) == ["/total"]

    after = read_words(image)
    assert [w.text for w in after.words] == [w.text for w in before.words]  # the text stays as read
    misread = next(w for w in after.words if "4.88" in w.alternatives)
    assert misread.text != "4.88"
    found = locate({"total": "4.88"}, [after])["/total"]
    assert FOUND <= found.score < 1.0
    assert found.box == misread.box
    # a value the page does not show is still flagged, and the other amounts are found as before
    for wrong in ("4.98", "4.18", "20.84", "9.34"):
        assert not_on_page({"total": wrong}, locate({"total": wrong}, [after])) == ["/total"]
    for right in ("20.34", "4.17", "3.39"):
        assert locate({"total": right}, [after])["/total"].score == 1.0


def test_the_locator_takes_an_alternative_only_where_it_equals_the_value() -> None:
    page = PageWords(
        words=[
            Word("TOTAL", (0.1, 0.5, 0.3, 0.55), 0.95, 3),
            Word("20.24", (0.6, 0.5, 0.8, 0.55), 0.91, 3, ("20.34",)),
            Word("9.34", (0.6, 0.6, 0.8, 0.65), 0.93, 4, ("9.84",)),
        ]
    )
    assert locate({"total": "20.34"}, [page])["/total"].score == pytest.approx(0.85)
    # the word's own text first: 9.34 is exact at 1.0 on its own word, not the alternative of another
    where = locate({"total": "9.34"}, [page])["/total"]
    assert (where.score, where.box) == (1.0, (0.6, 0.6, 0.8, 0.65))
    assert locate({"total": "20.24"}, [page])["/total"].score == 1.0
    # nothing fuzzy about an alternative: a near miss of it, or of the text, is not on the page
    for wrong in ("20.35", "20.44", "9.48", "2034.00"):
        assert not_on_page({"total": wrong}, locate({"total": wrong}, [page])) == ["/total"]


def test_alternatives_are_stored_with_the_word_and_old_pages_still_load() -> None:
    page = PageWords(
        words=[
            Word("20.24", (0.6, 0.5, 0.8, 0.55), 0.91, 3, ("20.34",)),
            Word("TOTAL", (0.1, 0.5, 0.3, 0.55), 0.95, 3),
        ]
    )
    stored = page.to_json()
    assert stored["words"][0][-1] == ["20.34"]
    assert len(stored["words"][1]) == 7  # no alternatives: the row as before
    assert PageWords.from_json(stored) == page
    old = {
        "status": "ok",
        "ms": 5.0,
        "passes": 1,
        "skew": 0.0,
        "words": [["4.88", 0.1, 0.1, 0.2, 0.2, 0.9, 0]],
    }
    assert PageWords.from_json(old).words == [Word("4.88", (0.1, 0.1, 0.2, 0.2), 0.9, 0)]


def test_column_contrast_darkens_a_faint_column_to_the_darkest() -> None:
    pixels = np.full((30, 40), 236, dtype=np.uint8)
    pixels[5:25, 5:10] = 50  # a stroke at full strength
    pixels[5:25, 20:25] = 143  # a stroke under a streak: half the ink
    treated = np.asarray(column_contrast(Image.fromarray(pixels)), dtype=np.float32)
    assert treated[10:20, 20:25].max() < 70
    assert treated[10:20, 5:10].max() < 70
    assert treated[:, 30:].min() > 230  # paper stays paper


def test_only_numeric_words_are_read_again_in_one_run(monkeypatch: pytest.MonkeyPatch) -> None:
    words = [
        Word("TOTAL", (0.1, 0.1, 0.3, 0.2), 0.95, 0),
        Word("4.38", (0.5, 0.1, 0.7, 0.2), 0.93, 0),
        Word("9.34", (0.5, 0.5, 0.7, 0.6), 0.93, 1),
    ]
    seen: list[Image.Image] = []

    def fake(grey: Image.Image, timeout_s: float) -> tuple[str, list[Word]]:
        seen.append(grey)
        width, height = grey.size
        # the strip: the two numeric words' cut-outs (100 x 40 page pixels each: the 80 x 20 px word with
        # half its height around it, at twice the size), 16 px apart; the first read "4.88", the second as before
        tops = (16, 16 + 80 + 16)
        return "ok", [
            Word(text, (20 / width, (top + 20) / height, 150 / width, (top + 60) / height), 0.9, n)
            for n, (text, top) in enumerate(zip(("4.88", "9.34"), tops, strict=True))
        ]

    monkeypatch.setattr(ocr, "_tesseract", fake)
    page = Image.new("L", (400, 200), 236)
    again = ocr.read_alternatives(page, words, 5.0)
    assert len(seen) == 1 and seen[0].size == (2 * 100 + 2 * 16, 2 * 80 + 3 * 16)
    assert [(w.text, w.alternatives) for w in again] == [("TOTAL", ()), ("4.38", ("4.88",)), ("9.34", ())]
