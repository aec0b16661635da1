"""US licensing jurisdictions: AAMVA issuer numbers (a licence barcode names its issuer by one), number formats
and cities (the sample generator draws from them)."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Jurisdiction:
    code: str  # USPS 2-letter code
    name: str
    iin: str  # AAMVA Issuer Identification Number
    number_pattern: str  # "@" a letter, "#" a digit, "*" either; anything else literal
    vehicle_class: str
    cities: tuple[tuple[str, str], ...]  # (city, 5-digit ZIP)
    color: tuple[int, int, int]  # the card's accent colour


JURISDICTIONS: tuple[Jurisdiction, ...] = (
    Jurisdiction(
        "CA", "California", "636014", "@#######", "C",
        (("SACRAMENTO", "95814"), ("LOS ANGELES", "90012"), ("SAN DIEGO", "92101"), ("FRESNO", "93721")),
        (32, 78, 140),
    ),
    Jurisdiction(
        "TX", "Texas", "636015", "########", "C",
        (("AUSTIN", "78701"), ("HOUSTON", "77002"), ("DALLAS", "75201"), ("EL PASO", "79901")),
        (140, 28, 36),
    ),
    Jurisdiction(
        "NY", "New York", "636001", "#########", "D",
        (("ALBANY", "12207"), ("BUFFALO", "14202"), ("ROCHESTER", "14604"), ("SYRACUSE", "13202")),
        (28, 58, 120),
    ),
    Jurisdiction(
        "FL", "Florida", "636010", "@############", "E",
        (("TAMPA", "33602"), ("ORLANDO", "32801"), ("MIAMI", "33130"), ("TALLAHASSEE", "32301")),
        (0, 110, 120),
    ),
    Jurisdiction(
        "IL", "Illinois", "636035", "@###########", "D",
        (("SPRINGFIELD", "62701"), ("CHICAGO", "60601"), ("PEORIA", "61602")),
        (40, 70, 110),
    ),
    Jurisdiction(
        "PA", "Pennsylvania", "636025", "########", "C",
        (("HARRISBURG", "17101"), ("PITTSBURGH", "15222"), ("ERIE", "16501")),
        (20, 60, 130),
    ),
    Jurisdiction(
        "OH", "Ohio", "636023", "@@######", "D",
        (("COLUMBUS", "43215"), ("CLEVELAND", "44113"), ("DAYTON", "45402")),
        (150, 30, 40),
    ),
    Jurisdiction(
        "WA", "Washington", "636045", "WDL*********", "C",
        (("SEATTLE", "98101"), ("SPOKANE", "99201"), ("OLYMPIA", "98501")),
        (20, 100, 70),
    ),
    Jurisdiction(
        "GA", "Georgia", "636055", "#########", "C",
        (("ATLANTA", "30303"), ("SAVANNAH", "31401"), ("MACON", "31201")),
        (120, 40, 50),
    ),
    Jurisdiction(
        "CO", "Colorado", "636020", "##-###-####", "R",
        (("DENVER", "80202"), ("BOULDER", "80302"), ("PUEBLO", "81003")),
        (40, 90, 50),
    ),
    Jurisdiction(
        "AZ", "Arizona", "636026", "@########", "D",
        (("PHOENIX", "85004"), ("TUCSON", "85701"), ("FLAGSTAFF", "86001")),
        (170, 80, 30),
    ),
    Jurisdiction(
        "NC", "North Carolina", "636004", "############", "C",
        (("RALEIGH", "27601"), ("CHARLOTTE", "28202"), ("DURHAM", "27701")),
        (30, 60, 110),
    ),
    Jurisdiction(
        "VA", "Virginia", "636000", "@########", "C",
        (("RICHMOND", "23219"), ("NORFOLK", "23510"), ("ROANOKE", "24011")),
        (50, 50, 100),
    ),
    Jurisdiction(
        "MA", "Massachusetts", "636002", "S########", "D",
        (("BOSTON", "02108"), ("WORCESTER", "01608"), ("SPRINGFIELD", "01103")),
        (110, 30, 40),
    ),
    Jurisdiction(
        "OR", "Oregon", "636029", "#######", "C",
        (("PORTLAND", "97204"), ("SALEM", "97301"), ("EUGENE", "97401")),
        (30, 90, 60),
    ),
)  # fmt: skip

_BY_CODE = {j.code: j for j in JURISDICTIONS}
_BY_IIN = {j.iin: j for j in JURISDICTIONS}

_LETTERS = "ABCDEFGHJKLMNPRSTVWXYZ"
_DIGITS = "0123456789"


def by_code(code: str) -> Jurisdiction:
    return _BY_CODE[code]


def by_iin(iin: str) -> Jurisdiction | None:
    return _BY_IIN.get(iin)


def licence_number(rng: random.Random, pattern: str) -> str:
    """A number shaped like the state's real ones (same length and letter/digit positions)."""
    out = []
    for symbol in pattern:
        if symbol == "@":
            out.append(rng.choice(_LETTERS))
        elif symbol == "#":
            out.append(rng.choice(_DIGITS))
        elif symbol == "*":
            out.append(rng.choice(_LETTERS + _DIGITS))
        else:
            out.append(symbol)
    return "".join(out)
