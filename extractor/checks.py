"""Cross-field checks: a registry of named rules that a schema lists under "x-bayou-checks".

Every check returns a verdict: passed, failed, or not applicable. A check whose inputs are null or missing
(or unreadable, which the schema validation reports separately) is *not applicable*: it counts as ok, so an
honest null never looks like a contradiction, and its message says why it was skipped.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from extractor.aba import is_valid_routing_number
from extractor.errors import BayouError

CENT = Decimal("0.01")
EARLIEST_CHECK_DATE = dt.date(1950, 1, 1)
MAX_CHECK_POSTDATING = dt.timedelta(days=180)
MIN_AGE_AT_ISSUE = 14
MAX_AGE_AT_ISSUE = 120

# USPS codes of the jurisdictions that issue US driver's licences: 50 states, DC and the inhabited territories.
USPS_CODES: dict[str, str] = {
    "AL": "Alabama", "AK": "Alaska", "AZ": "Arizona", "AR": "Arkansas", "CA": "California",
    "CO": "Colorado", "CT": "Connecticut", "DE": "Delaware", "FL": "Florida", "GA": "Georgia",
    "HI": "Hawaii", "ID": "Idaho", "IL": "Illinois", "IN": "Indiana", "IA": "Iowa",
    "KS": "Kansas", "KY": "Kentucky", "LA": "Louisiana", "ME": "Maine", "MD": "Maryland",
    "MA": "Massachusetts", "MI": "Michigan", "MN": "Minnesota", "MS": "Mississippi", "MO": "Missouri",
    "MT": "Montana", "NE": "Nebraska", "NV": "Nevada", "NH": "New Hampshire", "NJ": "New Jersey",
    "NM": "New Mexico", "NY": "New York", "NC": "North Carolina", "ND": "North Dakota", "OH": "Ohio",
    "OK": "Oklahoma", "OR": "Oregon", "PA": "Pennsylvania", "RI": "Rhode Island", "SC": "South Carolina",
    "SD": "South Dakota", "TN": "Tennessee", "TX": "Texas", "UT": "Utah", "VT": "Vermont",
    "VA": "Virginia", "WA": "Washington", "WV": "West Virginia", "WI": "Wisconsin", "WY": "Wyoming",
    "DC": "District of Columbia",
    "AS": "American Samoa", "GU": "Guam", "MP": "Northern Mariana Islands", "PR": "Puerto Rico",
    "VI": "U.S. Virgin Islands",
}  # fmt: skip


class UnknownCheck(BayouError):
    code = "unknown_check"


@dataclass(frozen=True)
class CheckContext:
    """What a check may depend on besides the document: the date "today" (fixed in tests)."""

    today: dt.date = field(default_factory=dt.date.today)


@dataclass(frozen=True)
class Verdict:
    """What a check function returns; `ok` None means not applicable."""

    ok: bool | None
    message: str


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    message: str
    applicable: bool = True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


CheckFunction = Callable[[Mapping[str, Any], CheckContext], Verdict]
_REGISTRY: dict[str, CheckFunction] = {}


def check(name: str) -> Callable[[CheckFunction], CheckFunction]:
    """Register a check under `name`, the name schemas use in "x-bayou-checks"."""

    def register(function: CheckFunction) -> CheckFunction:
        if name in _REGISTRY:
            raise ValueError(f"check {name!r} registered twice")
        _REGISTRY[name] = function
        return function

    return register


def registered_checks() -> list[str]:
    return sorted(_REGISTRY)


def run_check(name: str, data: Mapping[str, Any], context: CheckContext | None = None) -> CheckResult:
    function = _REGISTRY.get(name)
    if function is None:
        raise UnknownCheck(f"no check named {name!r}")
    if not isinstance(data, Mapping):
        return CheckResult(name, True, "not applicable: the document is not a JSON object", applicable=False)
    verdict = function(data, context or CheckContext())
    if verdict.ok is None:
        return CheckResult(name, True, f"not applicable: {verdict.message}", applicable=False)
    return CheckResult(name, verdict.ok, verdict.message)


def run_checks(
    names: Iterable[str], data: Mapping[str, Any], context: CheckContext | None = None
) -> list[CheckResult]:
    context = context or CheckContext()
    return [run_check(name, data, context) for name in names]


def passed(message: str) -> Verdict:
    return Verdict(True, message)


def failed(message: str) -> Verdict:
    return Verdict(False, message)


def not_applicable(message: str) -> Verdict:
    return Verdict(None, message)


# ---- readers: a value that is absent or malformed reads as None ------------------------------------------


def read_money(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def read_date(value: Any) -> dt.date | None:
    if not isinstance(value, str) or len(value) != 10:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


# ---- receipts ---------------------------------------------------------------------------------------------


@check("receipt_items_sum")
def receipt_items_sum(data: Mapping[str, Any], context: CheckContext) -> Verdict:
    subtotal = read_money(data.get("subtotal"))
    items = data.get("items")
    if subtotal is None:
        return not_applicable("no subtotal")
    if not isinstance(items, list) or not items:
        return not_applicable("no line items")
    prices = [read_money(item.get("total_price")) if isinstance(item, Mapping) else None for item in items]
    if any(price is None for price in prices):
        return not_applicable("a line item has no readable total_price")
    items_sum = sum(prices, Decimal(0))
    if abs(items_sum - subtotal) <= CENT:
        return passed(f"line items sum to the subtotal {subtotal}")
    return failed(f"line items sum to {items_sum}, the subtotal is {subtotal}")


@check("receipt_total_sum")
def receipt_total_sum(data: Mapping[str, Any], context: CheckContext) -> Verdict:
    subtotal, total = read_money(data.get("subtotal")), read_money(data.get("total"))
    if subtotal is None or total is None:
        return not_applicable("subtotal or total missing")
    # tax and tip that the receipt does not print are zero, not unknown
    tax = read_money(data.get("tax")) or Decimal(0)
    tip = read_money(data.get("tip")) or Decimal(0)
    expected = subtotal + tax + tip
    if abs(expected - total) <= CENT:
        return passed(f"subtotal + tax + tip = total {total}")
    return failed(f"subtotal {subtotal} + tax {tax} + tip {tip} = {expected}, the total is {total}")


# ---- checks (the bank kind) -------------------------------------------------------------------------------


@check("check_amount_words")
def check_amount_words(data: Mapping[str, Any], context: CheckContext) -> Verdict:
    numeric, words = read_money(data.get("amount_numeric")), data.get("amount_words")
    if numeric is None or not isinstance(words, str) or not words.strip():
        return not_applicable("amount in figures or in words missing")
    from_words = amount_from_words(words)
    if from_words is None:
        return failed(f"could not read an amount from the words {words!r}")
    if from_words == numeric:
        return passed(f"the amount in words equals {numeric}")
    return failed(f"the amount in words reads {from_words}, in figures {numeric}")


@check("check_routing_number")
def check_routing_number(data: Mapping[str, Any], context: CheckContext) -> Verdict:
    routing = data.get("routing_number")
    if not isinstance(routing, str) or not routing:
        return not_applicable("no routing number")
    if is_valid_routing_number(routing):
        return passed("the routing number passes the ABA checksum")
    return failed(f"{routing!r} fails the ABA checksum")


@check("check_date_plausible")
def check_date_plausible(data: Mapping[str, Any], context: CheckContext) -> Verdict:
    date = read_date(data.get("date"))
    if date is None:
        return not_applicable("no readable date")
    latest = context.today + MAX_CHECK_POSTDATING
    if date < EARLIEST_CHECK_DATE:
        return failed(f"{date} is before {EARLIEST_CHECK_DATE}")
    if date > latest:
        return failed(f"{date} is more than {MAX_CHECK_POSTDATING.days} days after {context.today}")
    return passed(f"{date} is a plausible check date")


# ---- driver's licences ------------------------------------------------------------------------------------


@check("license_date_order")
def license_date_order(data: Mapping[str, Any], context: CheckContext) -> Verdict:
    named = [
        ("date_of_birth", read_date(data.get("date_of_birth"))),
        ("issue_date", read_date(data.get("issue_date"))),
        ("expiration_date", read_date(data.get("expiration_date"))),
    ]
    present = [(name, date) for name, date in named if date is not None]
    if len(present) < 2:
        return not_applicable("fewer than two of date_of_birth, issue_date, expiration_date")
    wrong = [
        f"{earlier} {first} is not before {later} {second}"
        for (earlier, first), (later, second) in zip(present, present[1:], strict=False)
        if not first < second
    ]
    if wrong:
        return failed("; ".join(wrong))
    return passed("date_of_birth < issue_date < expiration_date")


@check("license_age_at_issue")
def license_age_at_issue(data: Mapping[str, Any], context: CheckContext) -> Verdict:
    born, issued = read_date(data.get("date_of_birth")), read_date(data.get("issue_date"))
    if born is None or issued is None:
        return not_applicable("date_of_birth or issue_date missing")
    age = age_on(born, issued)
    if MIN_AGE_AT_ISSUE <= age <= MAX_AGE_AT_ISSUE:
        return passed(f"holder aged {age} at issue")
    return failed(f"holder aged {age} at issue, outside {MIN_AGE_AT_ISSUE}..{MAX_AGE_AT_ISSUE}")


@check("license_state_codes")
def license_state_codes(data: Mapping[str, Any], context: CheckContext) -> Verdict:
    address = data.get("address")
    values = {
        "issuing_state": data.get("issuing_state"),
        "address.state": address.get("state") if isinstance(address, Mapping) else None,
    }
    present = {path: value for path, value in values.items() if value is not None}
    if not present:
        return not_applicable("no state codes")
    wrong = [f"{path} {value!r}" for path, value in present.items() if value not in USPS_CODES]
    if wrong:
        return failed("not a USPS state or territory code: " + ", ".join(wrong))
    return passed("state codes are valid USPS codes")


def age_on(born: dt.date, day: dt.date) -> int:
    """Whole years of age on `day` (a 29 February birthday counts on 1 March in common years)."""
    before_birthday = (day.month, day.day) < (born.month, born.day)
    return day.year - born.year - int(before_birthday)


# ---- amounts written in words -----------------------------------------------------------------------------

_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
    "twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
    "eighty": 80, "ninety": 90,
}  # fmt: skip
_SCALES = {"thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
_NOISE = {"dollars", "dollar", "only", "usd", "us", "exactly", "and"}
_FRACTION = re.compile(r"(?<![0-9])([0-9]{1,2}|xx|no|--)\s*/\s*100\b")
_FILL = re.compile(r"[*~=#_,\-]+|\.(?![0-9])")  # fill characters; a "." only when not a decimal point
_GROUPING = re.compile(r"(?<=[0-9]),(?=[0-9]{3}\b)")
_CENTS_WORD = re.compile(r"\bcents?\b")
_CENTS_START = re.compile(r"\b(?:and|dollars?)\b")


def amount_from_words(text: str) -> Decimal | None:
    """The amount of a check's legal amount line, e.g. "One hundred twenty-three and 45/100" -> 123.45.

    Understands hyphenated tens, "and" anywhere, "Dollars"/"Only", cents as "45/100", "xx/100", "no/100" or
    "forty-five cents", and fill characters (****). None when the text is not an amount.
    """
    split = _split_cents(_GROUPING.sub("", text.lower()))
    if split is None:
        return None
    words, cents = split
    tokens = [token for token in words.split() if token not in _NOISE]
    if not tokens:
        return None if cents is None else Decimal(cents) / 100
    dollars = integer_from_words(tokens)
    if dollars is None:
        return None
    return Decimal(dollars) + Decimal(cents or 0) / 100


def _split_cents(lowered: str) -> tuple[str, int | None] | None:
    """(the dollar words, the cents or None when not written); None when written cents are unreadable."""
    if fraction := _FRACTION.search(lowered):
        digits = fraction.group(1)
        rest = lowered[: fraction.start()] + " " + lowered[fraction.end() :]
        return _FILL.sub(" ", rest), int(digits) if digits.isdigit() else 0
    clean = _FILL.sub(" ", lowered)
    word = _CENTS_WORD.search(clean)
    if word is None:
        return clean, None
    # the cents are the words after the last "and" (or "dollars") before "cents"
    before = clean[: word.start()]
    starts = list(_CENTS_START.finditer(before))
    cut = starts[-1].end() if starts else 0
    cents = _cents_from_words(before[cut:])
    if cents is None:
        return None
    return before[:cut] + " " + clean[word.end() :], cents


def integer_from_words(tokens: list[str]) -> int | None:
    """["one", "thousand", "two", "hundred", "5"] -> 1205; None on a word that is not part of a number."""
    total, current = 0, 0
    for token in tokens:
        if token.isdigit():
            current += int(token)
        elif token in _UNITS:
            current += _UNITS[token]
        elif token == "a":
            current += 1  # "a hundred"
        elif token == "hundred":
            current = (current or 1) * 100
        elif token in _SCALES:
            total += (current or 1) * _SCALES[token]
            current = 0
        elif token != "and":
            return None
    return total + current


def _cents_from_words(text: str) -> int | None:
    tokens = text.split()
    if tokens in (["no"], ["zero"]):
        return 0
    value = integer_from_words(tokens)
    return value if value is not None and value < 100 else None
