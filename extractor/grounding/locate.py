"""Each extracted value to the words of its page that show it: {JSON pointer: Location}.

A value is compared in each form it may be printed in (normalise.variants) with runs of consecutive OCR
words in reading order, so a multi-word name or an address over two lines is one run. A run that equals a
form scores 1.0; equal once OCR's look-alike characters are made equal (O/0, S/5, ...), 0.9; a form
glued inside one word ("HGT5'-11"", "19HAIRWHI": a label printed against its value) or a multi-word
value whose first word has the label run into it, 0.85; a near miss where OCR itself
was unsure of the words (mean confidence under 0.6), up to 0.85 times the similarity. A near miss that
OCR read confidently is not a match: that is what a misspelt or invented value looks like.

Line items are placed row by row: an item's other fields prefer the row of its description (and the
line under it, where "2 @ 1.19" is printed), and no two fields take the same words when another run
scores as well.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any

from extractor.grounding.normalise import confusable, normalise, variants
from extractor.ocr import PageWords

# fields whose value the schema derives rather than copies from the page (an enum for a symbol or a
# label), so there is nothing to find
NOT_WRITTEN = frozenset({"/currency", "/payment_method", "/issuing_state", "/signature_present"})
_UNSURE_OCR = 0.6
_MAX_EXTRA_CHARS = 3


@dataclass(frozen=True)
class Location:
    page: int  # from 1
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in page fractions
    score: float  # 0..1: how well the words match the value

    def to_json(self) -> dict[str, Any]:
        return {"page": self.page, "box": [round(v, 5) for v in self.box], "score": round(self.score, 3)}


@dataclass(frozen=True)
class _Word:
    page: int
    order: int  # reading order over the whole document
    line: tuple[int, int]  # (page, line)
    text: str  # normalised
    box: tuple[float, float, float, float]
    confidence: float


@dataclass(frozen=True)
class _Candidate:
    location: Location
    words: tuple[int, ...]  # orders of the words used
    line: tuple[int, int]


def leaves(data: Any, pointer: str = "") -> Iterator[tuple[str, Any]]:
    """(pointer, value) of every value to look for: strings and numbers; a list of strings as one
    value (a licence's endorsements print as "HT"); not booleans, nulls or derived fields."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield from leaves(value, f"{pointer}/{key}")
    elif isinstance(data, list) and data and all(isinstance(v, str) for v in data):
        yield pointer, "".join(data)
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from leaves(value, f"{pointer}/{index}")
    elif _scalar(data) and pointer not in NOT_WRITTEN:
        yield pointer, data


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool) and bool(str(value).strip())


def field_kind(pointer: str) -> str:
    key = pointer.rsplit("/", 1)[-1]
    if key == "date" or key.endswith("_date") or key == "date_of_birth":
        return "date"
    if key.endswith("time"):
        return "time"
    if key == "height":
        return "height"
    return ""


def locate(data: Any, pages: list[PageWords]) -> dict[str, Location]:
    """Where each value of `data` is on `pages` (OCR words, page 1 first); values not found are absent."""
    words = _words(pages)
    if not words:
        return {}
    found: dict[str, Location] = {}
    used: set[int] = set()
    rows: dict[str, tuple[float, float]] = {}  # item pointer -> vertical band of its description
    row_lines: dict[str, tuple[int, int]] = {}  # item pointer -> its description's OCR line
    for pointer, value in sorted(leaves(data), key=lambda pv: _order(pv[0])):
        item = _item_of(pointer)
        band = rows.get(item) if item else None
        best = _best(words, pointer, value, used, band, row_lines.get(item) if item else None)
        if best is None:
            continue
        found[pointer] = best.location
        used.update(best.words)
        if item and item not in rows:
            y0, y1 = best.location.box[1], best.location.box[3]
            rows[item] = (y0 - 0.25 * (y1 - y0), y1 + 1.6 * (y1 - y0))
            row_lines[item] = best.line
    return found


_ITEM_FIELD_ORDER = {"description": 0, "total_price": 1, "quantity": 2, "unit_price": 3}


def _order(pointer: str) -> tuple[Any, ...]:
    """Visit items' descriptions first, then their amounts, keeping other fields in document order."""
    parts = pointer.strip("/").split("/")
    if len(parts) == 3 and parts[1].isdigit():
        return (1, int(parts[1]), _ITEM_FIELD_ORDER.get(parts[2], 9))
    return (0,)


def _item_of(pointer: str) -> str | None:
    parts = pointer.strip("/").split("/")
    return "/".join(parts[:2]) if len(parts) == 3 and parts[1].isdigit() else None


def _words(pages: list[PageWords]) -> list[_Word]:
    words = []
    for number, page in enumerate(pages, start=1):
        for word in page.words:
            text = normalise(word.text)
            if text:
                words.append(_Word(number, len(words), (number, word.line), text, word.box, word.confidence))
    return words


def _best(
    words: list[_Word],
    pointer: str,
    value: Any,
    used: set[int],
    band: tuple[float, float] | None,
    row_line: tuple[int, int] | None = None,
) -> _Candidate | None:
    forms = variants(value, kind=field_kind(pointer))
    candidates = [c for form in forms for c in _candidates(words, form)]
    if not candidates and isinstance(value, str) and ", " in value:
        return _in_parts(words, value.split(", "), used)
    if not candidates:
        return None
    return _ranked(candidates, pointer, used, band, row_line)


def _in_parts(words: list[_Word], parts: list[str], used: set[int]) -> _Candidate | None:
    """A value printed in pieces with other text between them (an address whose street and city lines
    have a check number beside them): each piece near the one before, within three of its heights."""
    chosen: list[_Candidate] = []
    for part in parts:
        found = [c for form in variants(part, kind="") for c in _candidates(words, form)]
        if chosen:
            last = chosen[-1].location
            reach = 3 * (last.box[3] - last.box[1])
            found = [
                c
                for c in found
                if c.location.page == last.page and abs(c.location.box[1] - last.box[1]) <= reach
            ]
        if not found:
            return None
        chosen.append(_ranked(found, "", used, None))
    boxes = [c.location.box for c in chosen]
    box = (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )
    score = min(c.location.score for c in chosen)
    orders = tuple(order for c in chosen for order in c.words)
    return _Candidate(Location(chosen[0].location.page, box, score), orders, chosen[0].line)


def _ranked(
    candidates: list[_Candidate],
    pointer: str,
    used: set[int],
    band: tuple[float, float] | None,
    row_line: tuple[int, int] | None = None,
) -> _Candidate:
    rightmost = pointer.endswith("total_price")

    def rank(candidate: _Candidate) -> tuple[float, float, float, float]:
        centre = (candidate.location.box[1] + candidate.location.box[3]) / 2
        in_band = band is not None and band[0] <= centre <= band[1]
        taken = any(order in used for order in candidate.words)
        same_line = row_line is not None and candidate.line == row_line
        adjusted = candidate.location.score + (0.2 if in_band else 0.0) + (0.1 if same_line else 0.0)
        adjusted -= 0.3 if taken else 0.0
        x = candidate.location.box[0]
        # earlier in reading order first; on one line, the fuller form ("12:02 PM" over "12:02"), then
        # amounts from the right (the amount column)
        line = float(candidate.line[0] * 10_000 + candidate.line[1])
        return (-adjusted, line, -float(len(candidate.words)), -x if rightmost else x)

    return min(candidates, key=rank)


def _candidates(words: list[_Word], form: str) -> Iterator[_Candidate]:
    """Runs of consecutive words (on one page) matching `form`."""
    target_confusable = confusable(form)
    fuzzy = len(form) >= 8 and any(ch.isalpha() for ch in form)
    for start in range(len(words)):
        joined = ""
        for end in range(start, len(words)):
            if words[end].page != words[start].page:
                break
            joined += words[end].text
            if len(joined) > len(form) + _MAX_EXTRA_CHARS:
                break
            run = words[start : end + 1]
            score = _score(joined, form, target_confusable, run, fuzzy)
            if score == 0 and len(run) > 1 and _label_glued(joined, form, run[0].text):
                score = 0.85
            if score > 0:
                yield _candidate(run, score)
        inside = _inside(words[start], form)
        if inside is not None:
            yield inside


def _score(joined: str, form: str, form_confusable: str, run: list[_Word], fuzzy: bool) -> float:
    if joined == form:
        return 1.0
    if len(joined) == len(form) and confusable(joined) == form_confusable:
        return 0.9
    if fuzzy and abs(len(joined) - len(form)) <= 2:
        confidence = sum(w.confidence for w in run) / len(run)
        if confidence < _UNSURE_OCR:
            similarity = SequenceMatcher(None, joined, form).ratio()
            if similarity >= 0.85:
                return round(0.85 * similarity, 3)
    return 0.0


def _label_glued(joined: str, form: str, first: str) -> bool:
    """A multi-word value whose first word OCR ran into the label before it ("2DONNA GRACE")."""
    extra = len(joined) - len(form)
    # the label differs in kind from the value's start (a digit before a name), else a misspelling that
    # drops the first letter would match
    return (
        0 < extra <= _MAX_EXTRA_CHARS
        and extra < len(first)
        and joined.endswith(form)
        and joined[extra - 1].isdigit() != form[0].isdigit()
    )


def _inside(word: _Word, form: str) -> _Candidate | None:
    """`form` glued to a label inside one word, with a letter/digit change at each glued edge; a long
    number (7+ characters: a routing or account number between MICR symbols, which OCR reads as digits
    or punctuation) may touch anything."""
    if len(form) < 3 or len(word.text) <= len(form):
        return None
    at = len(word.text) - len(form) if word.text.endswith(form) else word.text.find(form)
    if at < 0:
        return None
    before = word.text[at - 1] if at > 0 else ""
    after = word.text[at + len(form)] if at + len(form) < len(word.text) else ""
    glued = (before and before.isdigit() == form[0].isdigit()) or (
        after and after.isdigit() == form[-1].isdigit()
    )
    # a code of 3+ letters closing a word that starts with its label ("19HAIRWHI")
    label_before = not after and at >= 3
    if glued and len(form) < 7 and not label_before:
        return None
    x0, y0, x1, y1 = word.box
    share = (x1 - x0) / len(word.text)
    box = (x0 + share * at, y0, x0 + share * (at + len(form)), y1)
    return _Candidate(Location(word.page, box, 0.85), (word.order,), word.line)


def _candidate(run: list[_Word], score: float) -> _Candidate:
    box = (
        min(w.box[0] for w in run),
        min(w.box[1] for w in run),
        max(w.box[2] for w in run),
        max(w.box[3] for w in run),
    )
    return _Candidate(Location(run[0].page, box, score), tuple(w.order for w in run), run[0].line)
