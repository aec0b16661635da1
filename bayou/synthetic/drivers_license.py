"""US driver's licences: ground truth, the card front and the back with its AAMVA PDF417 barcode."""

from __future__ import annotations

import random
import string
from datetime import date
from typing import Any

from bayou.synthetic.common import CAPTURES, SyntheticDocument, page_boxes
from bayou.synthetic.licence_card import photograph_card, render_back, render_front
from bayou.synthetic.people import random_person, street_address
from extractor import aamva
from extractor.jurisdictions import JURISDICTIONS, Jurisdiction, by_code, licence_number

EYE_COLORS = ("BRO", "BLU", "GRN", "HAZ", "GRY", "BLK")
HAIR_COLORS = ("BRO", "BLK", "BLN", "RED", "GRY", "WHI", "SDY", "BAL")
_ENDORSEMENTS = ((), ("M",), ("N",), ("H", "T"))


def _dates(rng: random.Random) -> tuple[date, date, date]:
    """(birth, issue, expiry): issued 2016..2024 at age 16..90, expiring on a birthday 4 to 8 years on."""
    issue = date.fromordinal(date(2016, 1, 1).toordinal() + rng.randint(0, 8 * 365 + 150))
    age = rng.choices((rng.randint(17, 30), rng.randint(31, 65), rng.randint(66, 90)), weights=(3, 6, 2))[0]
    # day <= 28 keeps every anniversary a real date (no 29 February)
    birth = date(issue.year - age, rng.randint(1, 12), rng.randint(1, 28))
    expiry = date(issue.year + rng.choice((4, 5, 6, 8)), birth.month, birth.day)
    return birth, issue, expiry


def _discriminator(rng: random.Random) -> str:
    alphabet = string.ascii_uppercase + string.digits
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(10, 20)))


def licence_truth(rng: random.Random, jurisdiction: Jurisdiction | None = None) -> dict[str, Any]:
    """Ground truth of one licence (docs/schema-fields.md, drivers_license)."""
    state = jurisdiction or rng.choice(JURISDICTIONS)
    person = random_person(rng)
    birth, issue, expiry = _dates(rng)
    city, postal_code = rng.choice(state.cities)
    return {
        "document_number": licence_number(rng, state.number_pattern),
        "family_name": person.family,
        "given_names": person.given_names,
        "date_of_birth": birth.isoformat(),
        "issue_date": issue.isoformat(),
        "expiration_date": expiry.isoformat(),
        "sex": person.sex,
        "eye_color": rng.choice(EYE_COLORS),
        "hair_color": rng.choice(HAIR_COLORS) if rng.random() < 0.9 else None,
        "height": f"{rng.randint(58, 78):03d} IN",
        "weight_lb": rng.randint(100, 290) if rng.random() < 0.95 else None,
        "address": {
            "street": street_address(rng),
            "city": city,
            "state": state.code,
            "postal_code": postal_code,
        },
        "issuing_state": state.code,
        "vehicle_class": state.vehicle_class,
        "restrictions": "B" if rng.random() < 0.3 else None,
        "endorsements": list(rng.choices(_ENDORSEMENTS, weights=(80, 10, 5, 5))[0]),
        "document_discriminator": _discriminator(rng),
        "country": "USA",
    }


def generate_licence(rng: random.Random, *, dpi: int = 300, capture: str | None = None) -> SyntheticDocument:
    """Front and back images (two pages) of one licence; the barcode on the back carries the ground truth.

    `capture` "scan" or "photo" (default: either) applies to both sides, as they are digitised together.
    """
    truth = licence_truth(rng)
    state = by_code(truth["issuing_state"])
    payload = aamva.build_payload(truth)
    front, drawn = render_front(truth, state, rng, dpi)
    back = render_back(truth, state, payload, rng, dpi)
    style = capture or rng.choice(CAPTURES)
    # one session: both sides on the same table or scanner bed
    surface_seed = rng.getrandbits(32)
    captured = [
        photograph_card(side, random.Random(surface_seed), rng, style, max_tilt)
        for side, max_tilt in ((front, 4.0), (back, 2.0))
    ]
    front_geometry = captured[0][1]
    boxes = page_boxes({pointer: front_geometry.fraction_box(box) for pointer, box in drawn.items()}, page=1)
    return SyntheticDocument("drivers_license", truth, [image for image, _ in captured], boxes)
