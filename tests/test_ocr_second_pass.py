"""OCR's second pass (extractor/ocr.py): an unsure page is read again at twice the size, and each unsure
word is replaced by what the second pass read more confidently in its place."""

from __future__ import annotations

import pytest
from PIL import Image

from extractor import ocr
from extractor.ocr import Word, merge_passes, read_words


def test_unsure_words_are_replaced_by_the_more_confident_words_in_their_place() -> None:
    first = [
        Word("SHARP", (0.10, 0.10, 0.20, 0.12), 0.95, 0),
        Word("al", (0.02, 0.10, 0.04, 0.14), 0.50, 0),  # a "1" on one line, read two lines tall
        Word("17259", (0.60, 0.10, 0.70, 0.12), 0.30, 0),
    ]
    second = [
        Word("SHARF", (0.10, 0.10, 0.20, 0.12), 0.99, 4),  # a confident word is kept from the first pass
        Word("1", (0.02, 0.10, 0.03, 0.12), 0.96, 4),
        Word("17.59", (0.60, 0.10, 0.70, 0.12), 0.20, 4),  # less sure than the first: not taken
        Word("1", (0.02, 0.50, 0.03, 0.52), 0.99, 9),  # another place
    ]
    merged = merge_passes(first, second)
    assert [(w.text, w.confidence, w.line) for w in merged] == [
        ("SHARP", 0.95, 0),
        ("1", 0.96, 0),
        ("17259", 0.30, 0),
    ]


def _scripted(monkeypatch: pytest.MonkeyPatch, answers: list[tuple[str, list[Word]]]) -> list[Image.Image]:
    """FAKE Tesseract: each call answers the next scripted (status, words); returns the images it saw."""
    seen: list[Image.Image] = []

    def fake(grey: Image.Image, timeout_s: float) -> tuple[str, list[Word]]:
        seen.append(grey)
        return answers[len(seen) - 1]

    monkeypatch.setattr(ocr.tesseract, "available", lambda: True)
    monkeypatch.setattr(ocr, "_tesseract", fake)
    return seen


# numeric words read once more (tests/test_ocr_alternatives.py) and the clean-up: not what these tests are about
STEPS = ocr.OcrSteps(alternatives=False)


def test_a_page_read_confidently_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _scripted(monkeypatch, [("ok", [Word("TOTAL", (0.1, 0.1, 0.3, 0.2), 0.9, 0)])])
    words = read_words(Image.new("RGB", (200, 100), "white"), steps=STEPS)
    assert (words.passes, len(seen), [w.text for w in words.words]) == (1, 1, ["TOTAL"])


def test_an_unsure_page_is_read_again_at_twice_the_size(monkeypatch: pytest.MonkeyPatch) -> None:
    unsure = [Word("TOTAL", (0.1, 0.1, 0.3, 0.2), 0.9, 0), Word("2626", (0.5, 0.1, 0.7, 0.2), 0.4, 0)]
    again = [Word("26.26", (0.5, 0.1, 0.7, 0.2), 0.93, 0)]
    seen = _scripted(monkeypatch, [("ok", unsure), ("ok", again)])
    words = read_words(Image.new("RGB", (200, 100), "white"), steps=STEPS)
    assert [image.size for image in seen] == [(200, 100), (400, 200)]
    assert (words.passes, [w.text for w in words.words]) == (2, ["TOTAL", "26.26"])
    assert ocr.PageWords.from_json(words.to_json()) == words


def test_a_second_pass_past_the_budget_leaves_the_first_pass_words(monkeypatch: pytest.MonkeyPatch) -> None:
    unsure = [Word("2626", (0.5, 0.1, 0.7, 0.2), 0.4, 0)]
    _scripted(monkeypatch, [("ok", unsure), ("timeout", [])])
    words = read_words(Image.new("RGB", (200, 100), "white"), steps=STEPS)
    assert (words.status, words.words, words.passes) == ("ok", unsure, 2)
    _scripted(monkeypatch, [("ok", unsure)])
    assert read_words(Image.new("RGB", (200, 100), "white"), steps=ocr.ONE_PASS).passes == 1


def test_a_page_too_large_to_read_at_twice_the_size_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    unsure = [Word("2626", (0.5, 0.1, 0.7, 0.2), 0.4, 0)]
    seen = _scripted(monkeypatch, [("ok", unsure), ("ok", [])])
    large = Image.new("L", (4000, 3000), 255)  # 48 Mpx at twice the size
    assert large.width * large.height * ocr.SECOND_PASS_SCALE**2 > ocr.SECOND_PASS_MAX_PIXELS
    words = read_words(large, steps=STEPS)
    assert (words.passes, len(seen), words.words) == (1, 1, unsure)


def test_words_still_unsure_are_read_again_each_on_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """A check's date beside its smaller "DATE" label: read with it, garbage; cut out and read alone, right.
    The cut-outs go to Tesseract on one strip, and what it reads there comes back to the page's place."""
    unsure = [Word("TOTAL", (0.1, 0.1, 0.3, 0.2), 0.9, 0), Word("\\e2v2023", (0.5, 0.5, 0.7, 0.6), 0.1, 3)]
    seen: list[Image.Image] = []

    def fake(grey: Image.Image, timeout_s: float) -> tuple[str, list[Word]]:
        seen.append(grey)
        if len(seen) < 3:
            return "ok", unsure
        # the word's cut-out: page pixels (190, 90)-(290, 130) (half its 20 px height around it), at twice
        # its size (under REREAD_SMALL_PX tall), placed 16 px in from the strip's corner
        width, height = grey.size
        box = (16 + 10 * 2, 16 + 10 * 2, 16 + 90 * 2, 16 + 30 * 2)
        return "ok", [
            Word("01/21/2023", (box[0] / width, box[1] / height, box[2] / width, box[3] / height), 0.97, 0)
        ]

    monkeypatch.setattr(ocr.tesseract, "available", lambda: True)
    monkeypatch.setattr(ocr, "_tesseract", fake)
    steps = ocr.OcrSteps(clean_page=False, alternatives=False)
    words = read_words(Image.new("L", (400, 200), 255), steps=steps)
    assert [image.size for image in seen] == [(400, 200), (800, 400), (232, 112)]
    assert words.passes == 3
    assert [(w.text, w.line) for w in words.words] == [("TOTAL", 0), ("01/21/2023", 3)]
    assert words.words[1].box == pytest.approx((0.5, 0.5, 0.7, 0.6))
    seen.clear()
    without = ocr.OcrSteps(clean_page=False, reread_alone=False, alternatives=False)
    assert (read_words(Image.new("L", (400, 200), 255), steps=without).passes, len(seen)) == (2, 2)
