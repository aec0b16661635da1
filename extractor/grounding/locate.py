"""Each extracted value to the words of its page that show it: {JSON pointer: Location}.

A value is compared in each form it may be printed in (normalise.variants) with runs of consecutive OCR
words in reading order, so a multi-word name or an address over two lines is one run. A run that equals a
form scores 1.0; equal once OCR's look-alike characters are made equal (O/0, S/5, ...), 0.9; a form
glued inside one word ("HGT5'-11"", "19HAIRWHI": a label printed against its value) or a multi-word
value whose first word has the label run into it, 0.85; a near miss of a longer text whose every
difference lies in a word OCR itself was unsure of (confidence under 0.6), compared once look-alike
characters are made equal, up to 0.85 times the similarity. A near miss in a word OCR read confidently is
not a match: that is what a misspelt or invented value looks like. An amount whose decimal point OCR
read as another character ("17259", "S212" for 17.59, 5.12) matches at 0.85 where OCR was unsure of it.
A word with "@" in it ("4@6.44": quantity at unit price) is two words; an "@" or "©" read for a zero
("CS@1532729", "©.86") is a zero. An identifier (letters and digits mixed) glued inside a word to a
misread label ("PLNHGO83034") matches at 0.85 once look-alike characters are made equal. A word equal to
the value in OCR's other reading of it (`Word.alternatives`: a numeric word read again with each column's
contrast restored, against a thermal print head's faint streaks) and not in its text matches at 0.85.

A licence value comes after its AAMVA label ("15 SEX M", "12 RESTR B"): one printed beside, or glued to,
its label is preferred over the same text elsewhere, which is what places a one-letter value.

Line items are placed row by row: every item's description first, then each item's other fields from the
row of its description (and the line under it, where "2 @ 1.19" is printed, up to the next item's row);
a field that is not on its row is looked for elsewhere only once every row has been served, so one
misread row does not push the others' values down by a row. No two fields take the same words when
another run scores as well.
"""

from __future__ import annotations

import re
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
# The labels the AAMVA DL/ID card design standard prints before a licence's values (its field numbers,
# "4d DLN", "15 SEX", ..., go before them); OCR often runs a label into a short value ("SEXM", "RESTRB").
LABELS: dict[str, str] = {
    "/document_number": "DLN",
    "/expiration_date": "EXP",
    "/issue_date": "ISS",
    "/date_of_birth": "DOB",
    "/vehicle_class": "CLASS",
    "/restrictions": "RESTR",
    "/endorsements": "END",
    "/sex": "SEX",
    "/height": "HGT",
    "/weight_lb": "WGT",
    "/eye_color": "EYES",
    "/hair_color": "HAIR",
    "/document_discriminator": "DD",
    "/address/street": "8",
}
# what may stand before a label in the same word: its field number ("15SEX", "9AEND")
_FIELD_NUMBER = re.compile(r"\d{0,2}[A-Z]?")
_AMOUNT = re.compile(r"\d+\.\d{2}")
# "@"/"©" read for a zero: starting an amount ("@.54", "©.86"), or an "@" between a letter or digit and digits
# with no decimal point (so not "4@6.44", a quantity at its price)
_ZERO_MISREAD = re.compile(r"(?<![A-Za-z\d])[©@](?=\.\d)|(?<=[A-Za-z\d])@(?=\d+(?![\d.]))")
# bonuses when ranking runs of equal score: beside the field's label; on its item's row
_ANCHORED = 0.3
_ON_ROW = 0.2
_SAME_LINE = 0.1
# a word whose other OCR reading, not its text, equals the value
_ALTERNATIVE = 0.85


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
    alternatives: tuple[str, ...] = ()  # normalised, each unlike `text`


@dataclass(frozen=True)
class _Candidate:
    location: Location
    words: tuple[int, ...]  # orders of the words used
    line: tuple[int, int]
    anchored: bool = False  # beside or glued to the field's printed label


@dataclass(frozen=True)
class _Row:
    """Where an item's fields are looked for: its description's OCR line and a vertical band from the
    description down to (not into) the next item's description."""

    line: tuple[int, int]
    page: int
    band: tuple[float, float]


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
    descriptions: dict[str, _Candidate] = {}  # item pointer -> where its description is
    rows: dict[str, _Row] = {}
    off_row: list[tuple[str, Any]] = []  # item fields not on their row: looked for last, anywhere
    for pointer, value in sorted(leaves(data), key=lambda pv: _order(pv[0])):
        item = _item_of(pointer)
        if item and not pointer.endswith("/description") and not rows and descriptions:
            rows = _rows(descriptions)
        row = rows.get(item) if item else None
        best = _best(words, pointer, value, used, row)
        if best is None and row is not None:
            off_row.append((pointer, value))
            continue
        if best is None:
            continue
        found[pointer] = best.location
        used.update(best.words)
        if item and pointer.endswith("/description"):
            descriptions[item] = best
    for pointer, value in off_row:
        best = _best(words, pointer, value, used, None)
        if best is not None:
            found[pointer] = best.location
            used.update(best.words)
    return found


_ITEM_FIELD_ORDER = {"total_price": 1, "quantity": 2, "unit_price": 3}


def _order(pointer: str) -> tuple[Any, ...]:
    """Every item's description first (so each row knows where the next begins), then the items' amounts,
    keeping other fields in document order."""
    parts = pointer.strip("/").split("/")
    if len(parts) == 3 and parts[1].isdigit():
        if parts[2] == "description":
            return (1, int(parts[1]))
        return (2, int(parts[1]), _ITEM_FIELD_ORDER.get(parts[2], 9))
    return (0,)


def _item_of(pointer: str) -> str | None:
    parts = pointer.strip("/").split("/")
    return "/".join(parts[:2]) if len(parts) == 3 and parts[1].isdigit() else None


def _rows(descriptions: dict[str, _Candidate]) -> dict[str, _Row]:
    """Each item's row: from its description's top to 1.6 of its heights below it (the "2 @ 1.19" line),
    cut at the top of the nearest description below it on the same page."""
    rows = {}
    for item, where in descriptions.items():
        page, (_, y0, _, y1) = where.location.page, where.location.box
        height = y1 - y0
        bottom = y1 + 1.6 * height
        for other in descriptions.values():
            top = other.location.box[1]
            if other is not where and other.location.page == page and y0 + 0.5 * height < top < bottom:
                bottom = top
        rows[item] = _Row(where.line, page, (y0 - 0.25 * height, bottom))
    return rows


def _words(pages: list[PageWords]) -> list[_Word]:
    words: list[_Word] = []
    for number, page in enumerate(pages, start=1):
        for word in page.words:
            pieces = _pieces(word.text, word.box)
            for text, box in pieces:
                normal = normalise(text)
                if normal:
                    # another reading of a word split at "@" has no piece to go with
                    others = _alternatives(word.alternatives, normal) if len(pieces) == 1 else ()
                    line = (number, word.line)
                    words.append(_Word(number, len(words), line, normal, box, word.confidence, others))
    return words


def _alternatives(readings: tuple[str, ...], normal: str) -> tuple[str, ...]:
    others = (normalise(_ZERO_MISREAD.sub("0", reading)) for reading in readings)
    return tuple(other for other in others if other and other != normal)


def _pieces(text: str, box: tuple[float, float, float, float]) -> list[tuple[str, tuple[float, ...]]]:
    """A word split at "@" ("4@6.44": a quantity at its unit price, which OCR reads as one word), each
    piece with its share of the word's box by character count. An "@" or "©" that is not between a
    quantity and a price but beside a digit or a point is a misread zero ("CS@1532729", "©.86")."""
    text = _ZERO_MISREAD.sub("0", text)
    if "@" not in text:
        return [(text, box)]
    x0, y0, x1, y1 = box
    share = (x1 - x0) / len(text)
    pieces, start = [], 0
    for part in text.split("@"):
        if part:
            pieces.append((part, (x0 + share * start, y0, x0 + share * (start + len(part)), y1)))
        start += len(part) + 1
    return pieces  # type: ignore[return-value]


def _best(
    words: list[_Word], pointer: str, value: Any, used: set[int], row: _Row | None
) -> _Candidate | None:
    """The best run of words for `value`; with `row`, only runs on that item's row."""
    forms = variants(value, kind=field_kind(pointer))
    amount = bool(_AMOUNT.fullmatch(str(value)))
    candidates = [c for form in forms for c in _candidates(words, form, amount=amount)]
    label = LABELS.get(pointer)
    if label:
        candidates = [_anchor(c, words, label) for c in candidates]
        candidates += [c for form in forms for c in _glued_to_label(words, form, label)]
    if row is not None:
        candidates = [c for c in candidates if _on_row(c, row)]
    if not candidates and row is None and isinstance(value, str) and ", " in value:
        return _in_parts(words, value.split(", "), used)
    if not candidates:
        return None
    return _ranked(candidates, pointer, used, row)


def _on_row(candidate: _Candidate, row: _Row) -> bool:
    centre = (candidate.location.box[1] + candidate.location.box[3]) / 2
    return candidate.line == row.line or (
        candidate.location.page == row.page and row.band[0] <= centre <= row.band[1]
    )


def _anchor(candidate: _Candidate, words: list[_Word], label: str) -> _Candidate:
    """`candidate` marked anchored when the word before it on its line ends with `label`."""
    first = candidate.words[0]
    before = words[first - 1] if first > 0 else None
    if before is None or before.line != candidate.line or not before.text.endswith(label):
        return candidate
    return _Candidate(candidate.location, candidate.words, candidate.line, anchored=True)


def _glued_to_label(words: list[_Word], form: str, label: str) -> Iterator[_Candidate]:
    """`form` run into its label: "SEXM", "15SEXM"; "82215 MAPLE WAY" for street "2215 MAPLE WAY" after
    label 8. The characters are the value's own, so the score is an exact match's."""
    for start, first in enumerate(words):
        joined = ""
        for end in range(start, len(words)):
            if words[end].line != first.line:
                break
            joined += words[end].text
            head = joined[: len(joined) - len(form)]
            if len(joined) <= len(form) or len(head) >= len(first.text):
                continue
            if (
                joined.endswith(form)
                and head.endswith(label)
                and _FIELD_NUMBER.fullmatch(head[: -len(label)])
            ):
                run = words[start : end + 1]
                x0, y0, x1, y1 = _candidate(run, 1.0).location.box
                share = (first.box[2] - first.box[0]) / len(first.text)
                box = (first.box[0] + share * len(head), y0, x1, y1)
                yield _Candidate(
                    Location(first.page, box, 1.0), tuple(w.order for w in run), first.line, True
                )
            if len(joined) >= len(form) + len(first.text):
                break


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


def _ranked(candidates: list[_Candidate], pointer: str, used: set[int], row: _Row | None) -> _Candidate:
    rightmost = pointer.endswith("total_price")

    def rank(candidate: _Candidate) -> tuple[float, ...]:
        taken = any(order in used for order in candidate.words)
        # the description's own line first, except for the amount column, which a tilt puts on a line of
        # its own as often as not
        same_line = row is not None and candidate.line == row.line and not rightmost
        adjusted = candidate.location.score + (_SAME_LINE if same_line else 0.0)
        adjusted += (_ANCHORED if candidate.anchored else 0.0) - (0.3 if taken else 0.0)
        x = candidate.location.box[0]
        line = float(candidate.line[0] * 10_000 + candidate.line[1])
        if rightmost:
            # the amount column: on an item's row the rightmost amount, whatever line OCR put it on
            return (-adjusted, -x if row is not None else line, -x)
        # earlier in reading order first; on one line, the fuller form ("12:02 PM" over "12:02")
        return (-adjusted, line, -float(len(candidate.words)), x)

    return min(candidates, key=rank)


def _candidates(words: list[_Word], form: str, *, amount: bool = False) -> Iterator[_Candidate]:
    """Runs of consecutive words (on one page) matching `form`; `amount`: `form` is a decimal amount."""
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
            if score == 0 and amount and len(run) == 1:
                score = _misread_point(joined, target_confusable, run[0])
            if score == 0 and len(run) > 1 and _label_glued(joined, form, run[0].text):
                score = 0.85
            if score == 0 and len(run) == 1 and form in run[0].alternatives:
                score = _ALTERNATIVE
            if score > 0:
                yield _candidate(run, score)
        inside = _inside(words[start], form)
        if inside is not None:
            yield inside


def _score(joined: str, form: str, form_confusable: str, run: list[_Word], fuzzy: bool) -> float:
    if joined == form:
        return 1.0
    joined_confusable = confusable(joined)
    if len(joined) == len(form) and joined_confusable == form_confusable:
        return 0.9
    if fuzzy and abs(len(joined) - len(form)) <= 2:
        matcher = SequenceMatcher(None, joined_confusable, form_confusable, autojunk=False)
        similarity = matcher.ratio()
        if similarity >= 0.85 and _differences_unsure(matcher, run):
            return round(0.85 * similarity, 3)
    return 0.0


def _differences_unsure(matcher: SequenceMatcher[str], run: list[_Word]) -> bool:
    """Whether every character where the run differs from the form lies in a word OCR was unsure of."""
    ends, at = [], 0
    for word in run:
        at += len(word.text)
        ends.append(at)

    def word_at(position: int) -> _Word:
        return run[next((n for n, end in enumerate(ends) if position < end), len(run) - 1)]

    for op, i1, i2, _, _ in matcher.get_opcodes():
        if op == "equal":
            continue
        positions = range(i1, i2) if i2 > i1 else (max(0, i1 - 1), i1)
        if any(word_at(p).confidence >= _UNSURE_OCR for p in positions):
            return False
    return True


def _misread_point(joined: str, form_confusable: str, word: _Word) -> float:
    """An amount whose decimal point an unsure OCR read as a character ("17259" for 17.59)."""
    if word.confidence >= _UNSURE_OCR or len(joined) != len(form_confusable) + 1 or len(joined) < 4:
        return 0.0
    return 0.85 if confusable(joined[:-3] + joined[-2:]) == form_confusable else 0.0


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
    text = word.text
    if _id_like(form) and form not in text:
        # an identifier ("HG083034") glued to a misread label ("PLNHGO83034"): look-alikes made equal
        text, form = confusable(text), confusable(form)
    at = len(text) - len(form) if text.endswith(form) else text.find(form)
    if at < 0:
        return None
    before = text[at - 1] if at > 0 else ""
    after = text[at + len(form)] if at + len(form) < len(text) else ""
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


def _id_like(form: str) -> bool:
    """An identifier: 6+ characters mixing letters and digits (a licence or receipt number), which no
    misspelt name or shifted date can become by OCR's look-alikes alone."""
    return len(form) >= 6 and any(ch.isalpha() for ch in form) and any(ch.isdigit() for ch in form)


def _candidate(run: list[_Word], score: float) -> _Candidate:
    box = (
        min(w.box[0] for w in run),
        min(w.box[1] for w in run),
        max(w.box[2] for w in run),
        max(w.box[3] for w in run),
    )
    return _Candidate(Location(run[0].page, box, score), tuple(w.order for w in run), run[0].line)
