"""US bank checks: ground truth with a valid ABA routing number, and the personal-check image."""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from bayou.synthetic.check_render import CheckPrint, render_check
from bayou.synthetic.common import CAPTURES, SyntheticDocument, money, page_boxes
from bayou.synthetic.people import random_person, street_address
from bayou.synthetic.words import amount_to_words
from extractor.aba import aba_check_digit
from extractor.jurisdictions import JURISDICTIONS

BANKS = (
    "First Meridian Bank",
    "Cedar Valley Credit Union",
    "Lakeshore Savings Bank",
    "Prairie State Bank & Trust",
    "Harborview National Bank",
    "Summit Federal Credit Union",
    "Blue Ridge Community Bank",
)
COMPANY_PAYEES = (
    "Sunrise Property Management",
    "City Water & Power",
    "Oakwood Dental Group",
    "Riverside Youth Soccer League",
    "Precision Auto Repair",
    "Green Lawn Services LLC",
    "St. Mary's School",
    "Northgate Apartments",
)
MEMOS = (
    "Rent",
    "Invoice #{n}",
    "Deposit",
    "Birthday gift",
    "Tuition",
    "Dues",
    "Acct {n}",
    "Repairs",
    "Lessons",
)


def routing_number(rng: random.Random) -> str:
    """A checksum-valid number whose first two digits are a Federal Reserve district (01-12) or thrift (21-32)."""
    district = rng.choice([*range(1, 13), *range(21, 33)])
    first8 = f"{district:02d}{rng.randint(0, 999999):06d}"
    return first8 + aba_check_digit(first8)


def _amount(rng: random.Random) -> Decimal:
    dollars = round(10 ** rng.uniform(0.7, 4.0))
    cents = 0 if rng.random() < 0.35 else rng.randint(1, 99)
    return Decimal(dollars) + Decimal(cents) / 100


def _memo(rng: random.Random) -> str | None:
    if rng.random() < 0.35:
        return None
    return rng.choice(MEMOS).format(n=rng.randint(100, 9999))


def check_truth(rng: random.Random) -> dict[str, Any]:
    """Ground truth of one check (docs/schema-fields.md, check)."""
    payer = random_person(rng)
    state = rng.choice(JURISDICTIONS)
    city, zip_code = rng.choice(state.cities)
    payee = rng.choice(COMPANY_PAYEES) if rng.random() < 0.5 else random_person(rng).display_name
    amount = _amount(rng)
    return {
        "check_number": str(rng.randint(101, 9999)),
        "date": (date(2019, 1, 1) + timedelta(days=rng.randint(0, 6 * 365))).isoformat(),
        "payee": payee,
        "amount_numeric": money(amount),
        "amount_words": amount_to_words(amount),
        "currency": "USD",
        "payer_name": payer.display_name,
        "payer_address": f"{street_address(rng).title()}, {city.title()}, {state.code} {zip_code}",
        "bank_name": rng.choice(BANKS),
        "routing_number": routing_number(rng),
        "account_number": str(rng.randint(10**7, 10**12 - 1)),
        "memo": _memo(rng),
        "signature_present": rng.random() < 0.85,
    }


def generate_check(rng: random.Random, *, dpi: int = 200, capture: str | None = None) -> SyntheticDocument:
    """A check image (one page) and its ground truth; `capture` "scan" or "photo" (default: either)."""
    truth = check_truth(rng)
    style = CheckPrint.random(rng)
    image, boxes = render_check(truth, style, rng, dpi, capture or rng.choice(CAPTURES))
    return SyntheticDocument("check", truth, [image], page_boxes(boxes, page=1))
