"""The forms a value can take on a page, reduced to comparable strings.

Comparison ignores case, spaces and punctuation other than the decimal point ("$26.26", "**26.26**" and
"26.26" are the same; so are "(468) 555-0159" and "468 555 0159"). Dates, times, amounts and heights are
printed in many ways, so a value expands into each printed form it may take.
"""

from __future__ import annotations

import re
from datetime import date, time
from decimal import Decimal, InvalidOperation

_KEEP = re.compile(r"[^0-9A-Z]")
# characters OCR confuses with each other, mapped onto one representative (letters onto digits)
_CONFUSABLE = str.maketrans(
    {"O": "0", "Q": "0", "D": "0", "I": "1", "L": "1", "|": "1", "S": "5", "B": "8", "Z": "2"}
)
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def normalise(text: str) -> str:
    """Upper case letters and digits only: OCR often loses or splits at a decimal point."""
    return _KEEP.sub("", text.upper())


def confusable(text: str) -> str:
    """`normalise`d text with OCR's look-alike characters made equal (O/0, I/l/1, S/5, B/8, Z/2)."""
    return text.translate(_CONFUSABLE)


def variants(value: object, *, kind: str) -> list[str]:
    """The normalised forms `value` may be printed in; `kind` is the field's format ("date", "time",
    "height", or "" for text/numbers)."""
    text = str(value)
    forms = [text]
    if kind == "date":
        forms += _date_forms(text)
    elif kind == "time":
        forms += _time_forms(text)
    elif kind == "height":
        forms += _height_forms(text)
    else:
        forms += _amount_forms(text)
        if isinstance(value, float):
            # a weight or quantity as a receipt prints it, to two decimals (0.6 lb as "0.60")
            forms.append(f"{value:.2f}")
    seen: dict[str, None] = {}
    for form in forms:
        normal = normalise(form)
        if normal:
            seen.setdefault(normal, None)
    return list(seen)


def _date_forms(text: str) -> list[str]:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return []
    m, d, y, yy = day.month, day.day, day.year, day.year % 100
    month = day.strftime("%B")
    return [
        f"{m:02d}/{d:02d}/{y}",
        f"{m}/{d}/{y}",
        f"{m:02d}/{d:02d}/{yy:02d}",
        f"{m}/{d}/{yy:02d}",
        f"{d:02d}/{m:02d}/{y}",
        f"{d:02d}/{m:02d}/{yy:02d}",
        f"{month} {d}, {y}",
        f"{month} {d:02d}, {y}",
        f"{_MONTHS[m - 1]} {d:02d}, {y}",
        f"{_MONTHS[m - 1]} {d}, {y}",
        f"{d:02d} {_MONTHS[m - 1]} {y}",
    ]


def _time_forms(text: str) -> list[str]:
    try:
        moment = time.fromisoformat(text)
    except ValueError:
        return []
    hour12 = moment.hour % 12 or 12
    half = "AM" if moment.hour < 12 else "PM"
    return [f"{hour12}:{moment.minute:02d} {half}", f"{hour12:02d}:{moment.minute:02d} {half}"]


def _height_forms(text: str) -> list[str]:
    match = re.fullmatch(r"(\d+)\s*IN", text.strip().upper())
    if not match:
        return []
    inches = int(match.group(1))
    return [f"{inches // 12}'-{inches % 12:02d}\"", f"{inches // 12}'{inches % 12}\""]


def _amount_forms(text: str) -> list[str]:
    """A plain decimal also as printed without trailing zeros' padding or with thousands separators."""
    if not re.fullmatch(r"-?\d+\.\d{2}", text):
        return []
    try:
        amount = Decimal(text)
    except InvalidOperation:
        return []
    return [f"{amount:,.2f}"]
