"""Validate a model's JSON against its document type: normalise, check the schema, run the cross-field checks.

Normalisation is guided by the schema: a field's kind (date, money, time, USPS state, digits, enum) is read
from its `format` or `pattern`, so the same code serves every document type. It only rewrites a value into
the convention the schema asks for when the reading is unambiguous, and leaves anything it cannot read for
the schema validation to report.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from extractor.checks import USPS_CODES, CheckContext, CheckResult, run_checks
from extractor.schemas import MONEY_PATTERN, STATE_PATTERN, TIME_PATTERN, load_schema, schema_checks

CENT = Decimal("0.01")
NULL_WORDS = {"", "null", "none", "n/a"}
# receipts paid in these currencies print month-first dates; others (MYR, EUR, GBP, ...) day-first
MONTH_FIRST_CURRENCIES = {"USD"}


@dataclass(frozen=True)
class Issue:
    """A schema violation; `path` is a JSON pointer into the (normalised) document."""

    path: str
    message: str


@dataclass(frozen=True)
class Change:
    """A value that normalisation rewrote."""

    path: str
    before: Any
    after: Any


@dataclass(frozen=True)
class Validation:
    doc_type: str
    data: Any
    errors: list[Issue] = field(default_factory=list)
    checks: list[CheckResult] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)

    @property
    def schema_ok(self) -> bool:
        return not self.errors

    @property
    def checks_ok(self) -> bool:
        return all(result.ok for result in self.checks)

    @property
    def ok(self) -> bool:
        return self.schema_ok and self.checks_ok

    def as_dict(self) -> dict[str, Any]:
        return {
            "doc_type": self.doc_type,
            "ok": self.ok,
            "data": self.data,
            "errors": [asdict(issue) for issue in self.errors],
            "checks": [result.as_dict() for result in self.checks],
            "changes": [asdict(change) for change in self.changes],
        }


def validate(
    doc_type: str, data: Any, *, normalise: bool = True, context: CheckContext | None = None
) -> Validation:
    """Normalise `data` (a copy), validate it against the schema of `doc_type` and run its checks."""
    changes: list[Change] = []
    if normalise:
        data, changes = normalise_document(doc_type, data)
    errors = schema_errors(doc_type, data)
    checks = run_checks(schema_checks(doc_type), data, context) if isinstance(data, Mapping) else []
    return Validation(doc_type, data, errors, checks, changes)


def schema_errors(doc_type: str, data: Any) -> list[Issue]:
    issues = [issue for error in _validator(doc_type).iter_errors(data) for issue in _issues(error)]
    return sorted(issues, key=lambda issue: (issue.path, issue.message))


@cache
def _validator(doc_type: str) -> Draft202012Validator:
    return Draft202012Validator(load_schema(doc_type), format_checker=Draft202012Validator.FORMAT_CHECKER)


def _issues(error: ValidationError) -> list[Issue]:
    parent = json_pointer(error.absolute_path)
    instance = error.instance
    # point at the missing or unexpected key itself rather than at the object that holds it
    if error.validator == "required" and isinstance(instance, Mapping):
        missing = [key for key in error.validator_value if key not in instance]
        return [Issue(f"{parent}/{_escape(key)}", "required key is missing") for key in missing]
    if error.validator == "additionalProperties" and isinstance(instance, Mapping):
        known = error.schema.get("properties", {})
        extra = [key for key in instance if key not in known]
        return [Issue(f"{parent}/{_escape(key)}", "key not allowed by the schema") for key in extra]
    return [Issue(parent, error.message)]


def json_pointer(parts: Any) -> str:
    """RFC 6901 pointer of a path such as ["items", 0, "total_price"] -> "/items/0/total_price"."""
    return "".join(f"/{_escape(str(part))}" for part in parts)


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


# ---- normalisation ----------------------------------------------------------------------------------------


@dataclass
class _Walk:
    day_first: bool
    changes: list[Change] = field(default_factory=list)


def normalise_document(doc_type: str, data: Any) -> tuple[Any, list[Change]]:
    """A normalised copy of `data` and the list of values that changed."""
    walk = _Walk(day_first=_prefers_day_first(data))
    return _normalise(data, _validator(doc_type).schema, [], walk), walk.changes


def _prefers_day_first(data: Any) -> bool:
    currency = data.get("currency") if isinstance(data, Mapping) else None
    if not isinstance(currency, str) or not currency.strip():
        return False
    return currency.strip().upper() not in MONTH_FIRST_CURRENCIES


def _normalise(value: Any, schema: Mapping[str, Any], path: list[str | int], walk: _Walk) -> Any:
    if isinstance(value, Mapping):
        properties = schema.get("properties", {})
        return {
            key: _normalise(item, properties[key], [*path, key], walk) if key in properties else item
            for key, item in value.items()
        }
    if isinstance(value, list):
        items = schema.get("items", {})
        return [_normalise(item, items, [*path, index], walk) for index, item in enumerate(value)]
    after = _normalise_leaf(value, schema, walk.day_first)
    if after != value or type(after) is not type(value):
        walk.changes.append(Change(json_pointer(path), value, after))
    return after


def _normalise_leaf(value: Any, schema: Mapping[str, Any], day_first: bool) -> Any:
    types = _types(schema)
    if isinstance(value, str):
        value = " ".join(value.split())
        if "null" in types and value.casefold() in NULL_WORDS:
            return None
    if value is None:
        return None
    converted = _convert(value, schema, types, day_first)
    return value if converted is None else converted


def _convert(value: Any, schema: Mapping[str, Any], types: set[str], day_first: bool) -> Any:
    """The value in the schema's convention, or None when it cannot be read unambiguously."""
    pattern = schema.get("pattern")
    if pattern == MONEY_PATTERN:
        return normalise_money(value)
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return _number(value, types)
    if not isinstance(value, str):
        return None
    if "enum" in schema:
        return _enum_member(value, schema["enum"])
    if schema.get("format") == "date":
        return normalise_date(value, day_first=day_first)
    if pattern == TIME_PATTERN:
        return normalise_time(value)
    if pattern == STATE_PATTERN:
        return normalise_state(value)
    if isinstance(pattern, str) and pattern.startswith("^[0-9]{") and pattern.endswith("}$"):
        return _digits(value)
    if "string" not in types:
        return _from_text(value, types)
    return None


def _types(schema: Mapping[str, Any]) -> set[str]:
    types = schema.get("type", [])
    return {types} if isinstance(types, str) else set(types)


def _number(value: int | float, types: set[str]) -> int | float | None:
    if "integer" in types and isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _from_text(value: str, types: set[str]) -> Any:
    if "boolean" in types:
        return {"true": True, "yes": True, "y": True, "false": False, "no": False, "n": False}.get(
            value.lower()
        )
    match = re.fullmatch(r"(-?\d+(?:\.\d+)?)\s*[a-zA-Z]*\.?", value)
    if match is None:
        return None
    number = Decimal(match.group(1))
    if "integer" in types and number == number.to_integral_value():
        return int(number)
    if "number" in types:
        return int(number) if number == number.to_integral_value() else float(number)
    return None


def _enum_member(value: str, members: list[Any]) -> str | None:
    def key(text: str) -> str:
        return re.sub(r"[\s\-]+", "_", text.strip()).casefold()

    matches = [member for member in members if isinstance(member, str) and key(member) == key(value)]
    return matches[0] if len(matches) == 1 else None


def _digits(value: str) -> str | None:
    # MICR and printed numbers come grouped with spaces or dashes
    compact = re.sub(r"[\s\-]", "", value)
    return compact if compact.isdigit() else None


# ---- money ------------------------------------------------------------------------------------------------


def normalise_money(value: Any) -> str | None:
    """A decimal string with two places: "$1,234.5" -> "1234.50", "(12.00)" -> "-12.00", 7 -> "7.00"."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        amount = _decimal(str(value))
    elif isinstance(value, str):
        amount = _money_from_text(value)
    else:
        return None
    if amount is None:
        return None
    text = format(amount.quantize(CENT, rounding=ROUND_HALF_UP), "f")
    return "0.00" if text == "-0.00" else text


def _money_from_text(text: str) -> Decimal | None:
    text = text.strip()
    negative = text.startswith("-") or text.endswith("-") or (text.startswith("(") and text.endswith(")"))
    number = re.sub(r"[^0-9.,]", "", text)
    if not any(char.isdigit() for char in number):
        return None
    amount = _decimal(_drop_grouping(number))
    if amount is None:
        return None
    return -amount if negative else amount


def _drop_grouping(number: str) -> str:
    """Remove thousands separators, leaving "." as the decimal point ("1.234,50" -> "1234.50")."""
    if "," in number and "." in number:
        decimal_mark = "," if number.rfind(",") > number.rfind(".") else "."
        grouping = "." if decimal_mark == "," else ","
        return number.replace(grouping, "").replace(decimal_mark, ".")
    if "," in number:
        # a single comma followed by one or two digits is a decimal comma; otherwise grouping
        return number.replace(",", ".") if re.fullmatch(r"\d+,\d{1,2}", number) else number.replace(",", "")
    if number.count(".") > 1:
        return number.replace(".", "")
    return number


def _decimal(text: str) -> Decimal | None:
    try:
        amount = Decimal(text)
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


# ---- dates and times --------------------------------------------------------------------------------------

_MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",),
            ("jun", "june"), ("jul", "july"), ("aug", "august"), ("sep", "sept", "september"),
            ("oct", "october"), ("nov", "november"), ("dec", "december"),
        ],
        start=1,
    )
    for name in names
}  # fmt: skip
_MONTH = r"([a-z]{3,9})\.?"
_SEP = r"[\s/.\-,]+"
_WEEKDAY = re.compile(r"^(mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun)[a-z]*\.?,?\s+")


def normalise_date(text: str, *, day_first: bool = False) -> str | None:
    """An ISO date from common printed forms; None when unreadable.

    Numeric dates with two small parts are ambiguous: 03/04/2024 is read month-first unless `day_first`.
    A part above 12 decides it either way. Two-digit years land within 20 years from now or in the past.
    """
    text = _WEEKDAY.sub("", " ".join(text.lower().split()))
    for parse in (_iso_like, _numeric, _with_month_name, _compact):
        parsed = parse(text, day_first)
        if parsed is not None:
            return parsed.isoformat()
    return None


def _iso_like(text: str, day_first: bool) -> dt.date | None:
    match = re.fullmatch(r"(\d{4})[/.\-](\d{1,2})[/.\-](\d{1,2})", text)
    return _date(match.group(1), match.group(2), match.group(3)) if match else None


def _numeric(text: str, day_first: bool) -> dt.date | None:
    match = re.fullmatch(r"(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{2}|\d{4})", text)
    if match is None:
        return None
    first, second, year = int(match.group(1)), int(match.group(2)), match.group(3)
    if first > 12 or (day_first and second <= 12):
        return _date(year, second, first)
    return _date(year, first, second)


def _with_month_name(text: str, day_first: bool) -> dt.date | None:
    # "jan 5, 2024", "january 5 2024", "5 jan 2024", "05-jan-24"
    month_first = re.fullmatch(rf"{_MONTH}{_SEP}(\d{{1,2}})(?:st|nd|rd|th)?{_SEP}(\d{{2}}|\d{{4}})", text)
    if month_first and month_first.group(1) in _MONTHS:
        return _date(month_first.group(3), _MONTHS[month_first.group(1)], month_first.group(2))
    day_before = re.fullmatch(rf"(\d{{1,2}})(?:st|nd|rd|th)?{_SEP}{_MONTH}{_SEP}(\d{{2}}|\d{{4}})", text)
    if day_before and day_before.group(2) in _MONTHS:
        return _date(day_before.group(3), _MONTHS[day_before.group(2)], day_before.group(1))
    return None


def _compact(text: str, day_first: bool) -> dt.date | None:
    if not re.fullmatch(r"\d{8}", text):
        return None
    # YYYYMMDD when it reads as one, else MMDDYYYY (the AAMVA barcode order)
    as_iso = _date(text[:4], text[4:6], text[6:]) if 1900 <= int(text[:4]) <= 2100 else None
    return as_iso or _date(text[4:], text[:2], text[2:4])


def _date(year: str | int, month: str | int, day: str | int) -> dt.date | None:
    full_year = _full_year(str(year))
    try:
        return dt.date(full_year, int(month), int(day))
    except ValueError:
        return None


def _full_year(year: str) -> int:
    if len(year) != 2:
        return int(year)
    this_year = dt.date.today().year
    candidate = 2000 + int(year)
    return candidate if candidate <= this_year + 20 else candidate - 100


def normalise_time(text: str) -> str | None:
    """24-hour HH:MM from "2:30 PM", "14:30:59", "2.30pm"; None when unreadable."""
    match = re.fullmatch(r"(\d{1,2})[:.h](\d{2})(?:[:.]\d{2})?\s*(?:([ap])\.?\s*m\.?)?", text.strip().lower())
    if match is None:
        return None
    hour, minute, half = int(match.group(1)), int(match.group(2)), match.group(3)
    if half is not None:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if half == "p" else 0)
    if hour > 23 or minute > 59:
        return None
    return f"{hour:02d}:{minute:02d}"


# ---- US states --------------------------------------------------------------------------------------------

_STATE_ALIASES = {
    "US Virgin Islands": "VI",
    "Virgin Islands": "VI",
    "Washington DC": "DC",
    "Washington D.C.": "DC",
    "D.C.": "DC",
}


def _state_key(text: str) -> str:
    return " ".join(re.sub(r"[.,]", " ", text).split()).casefold()


_STATE_BY_NAME = {_state_key(name): code for code, name in USPS_CODES.items()} | {
    _state_key(alias): code for alias, code in _STATE_ALIASES.items()
}


def normalise_state(text: str) -> str | None:
    """A USPS code from a code in any case or a full state/territory name ("New York" -> "NY")."""
    key = _state_key(text)
    if key.upper() in USPS_CODES:
        return key.upper()
    return _STATE_BY_NAME.get(key)
