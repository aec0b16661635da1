"""Whether OCR could read the place a field's value belongs in: what tells "not on the page" from "not
verifiable".

A handwritten check field or a faded licence value can be on the page and still come out of Tesseract as
low-confidence garbage; calling it "not found" then claims something OCR cannot know. A field is not
verifiable when its printed label (the anchor: a check's DATE, ORDER OF, $, MEMO, DOLLARS; a licence's
AAMVA label) was read, and every word in the place its value is written relative to that label (the same
line, on the label's value side, within a few label heights) was read with confidence under UNREADABLE.
An empty place (OCR read no words there) is not verifiable only for a check's date, payee and amounts,
which a written check always fills in; a blank memo, or a licence place with nothing read, may hold an
invented value, so a value not found there stays not found.
Fields with no printed label (a receipt's) are never called not verifiable.
"""

from __future__ import annotations

from dataclasses import dataclass

from extractor.grounding.locate import LABELS
from extractor.grounding.normalise import normalise
from extractor.ocr import PageWords, Word

# Tesseract's confidence under which a word is taken as unreadable; locate.py trusts no near miss in a
# word read above 0.6 either
UNREADABLE = 0.6


@dataclass(frozen=True)
class Anchor:
    label: str  # normalised text of the label's last word
    side: str  # "right": the value follows the label; "left": it comes before it
    reach: float  # how far the value's place goes, in label heights
    required: bool = False  # never left blank where the label is printed (a check's date, payee, amounts)


_CHECK_ANCHORS: dict[str, Anchor] = {
    "/date": Anchor("DATE", "right", 22.0, required=True),
    "/payee": Anchor("OF", "right", 45.0, required=True),  # "PAY TO THE / ORDER OF"
    "/amount_numeric": Anchor("$", "right", 12.0, required=True),
    "/memo": Anchor("MEMO", "right", 28.0),
    "/amount_words": Anchor("DOLLARS", "left", 60.0, required=True),
}
# a licence's value is printed right after its label on the same line
ANCHORS: dict[str, Anchor] = {
    **_CHECK_ANCHORS,
    **{p: Anchor(label, "right", 10.0) for p, label in LABELS.items() if not label.isdigit()},
}


def unreadable_place(pointer: str, pages: list[PageWords]) -> str | None:
    """Why the value of `pointer` cannot be verified on `pages` (its label was read, every word where its
    value goes is unreadable), or None where OCR could have read it."""
    anchor = ANCHORS.get(pointer)
    if anchor is None:
        return None
    for number, page in enumerate(pages, start=1):
        for label in (w for w in page.words if _is_label(w, anchor.label)):
            place = _place(page.words, label, anchor)
            if not place and anchor.required:
                return f"page {number}: OCR read no words beside its label {anchor.label!r}"
            if place and all(w.confidence < UNREADABLE for w in place):
                best = max(w.confidence for w in place)
                return (
                    f"page {number}: the {len(place)} word(s) beside its label {anchor.label!r} were read "
                    f"with confidence under {UNREADABLE} (best {best:.2f})"
                )
    return None


def _is_label(word: Word, label: str) -> bool:
    if label == "$":
        return word.text == "$"
    text = normalise(word.text)
    if text == label:
        return True
    # a licence label may carry its field number before it ("15SEX", "4DDLN")
    return label not in _CHECK_LABELS and text.endswith(label) and len(text) <= len(label) + 3


_CHECK_LABELS = frozenset(a.label for a in _CHECK_ANCHORS.values())


def _place(words: list[Word], label: Word, anchor: Anchor) -> list[Word]:
    x0, y0, x1, y1 = label.box
    height = max(y1 - y0, 1e-6)
    top, bottom = y0 - 1.5 * height, y1 + 0.5 * height
    # a word with no letter or digit (a rule's "_", a box edge "|") is the form's print, not the value
    band = [
        w
        for w in words
        if w is not label and normalise(w.text) and top <= (w.box[1] + w.box[3]) / 2 <= bottom
    ]
    if anchor.side == "right":
        band = sorted(
            (w for w in band if x1 <= w.box[0] <= x1 + anchor.reach * height), key=lambda w: w.box[0]
        )
    else:
        band = sorted(
            (w for w in band if x0 - anchor.reach * height <= w.box[2] <= x0), key=lambda w: -w.box[2]
        )
    place = []
    for word in band:
        # the place ends at the next printed label (the payee's line ends at the "$" box)
        if normalise(word.text) in _CHECK_LABELS and word.confidence >= UNREADABLE:
            break
        place.append(word)
    return place
