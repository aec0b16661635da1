"""The AAMVA DL/ID card design standard's PDF417 payload: build one from ground truth, parse one back.

Layout (AAMVA 2020, version 10): compliance indicator "@", data element separator LF, record separator RS,
segment terminator CR, file type "ANSI ", 6-digit issuer number (IIN), 2-digit AAMVA version, 2-digit
jurisdiction version, 2-digit number of subfiles, then one 10-character designator per subfile (type,
4-digit offset, 4-digit length) and the subfiles: "DL", then elements "DAQ..." separated by LF, ended by CR.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from extractor.jurisdictions import by_code, by_iin

COMPLIANCE = "@"
ELEMENT_SEPARATOR = "\n"
RECORD_SEPARATOR = "\x1e"
SEGMENT_TERMINATOR = "\r"
FILE_TYPE = "ANSI "
AAMVA_VERSION = 10
_HEADER_LENGTH = 21
_DESIGNATOR_LENGTH = 10

_SEX_CODES = {"M": "1", "F": "2", "X": "9"}
_SEX_FROM_CODE = {code: sex for sex, code in _SEX_CODES.items()}
_NONE = "NONE"


def _mmddccyy(iso: str) -> str:
    value = date.fromisoformat(iso)
    return f"{value.month:02d}{value.day:02d}{value.year:04d}"


def _iso(mmddccyy: str) -> str:
    return date(int(mmddccyy[4:8]), int(mmddccyy[0:2]), int(mmddccyy[2:4])).isoformat()


def _elements(truth: dict[str, Any]) -> list[tuple[str, str]]:
    """The DL subfile's elements in the order the standard lists the mandatory ones."""
    given, _, middle = truth["given_names"].partition(" ")
    address = truth["address"]
    elements = [
        ("DCA", truth["vehicle_class"] or _NONE),
        ("DCB", truth["restrictions"] or _NONE),
        ("DCD", "".join(truth["endorsements"]) or _NONE),
        ("DBA", _mmddccyy(truth["expiration_date"])),
        ("DCS", truth["family_name"]),
        ("DAC", given),
        ("DAD", middle or _NONE),
        ("DBD", _mmddccyy(truth["issue_date"])),
        ("DBB", _mmddccyy(truth["date_of_birth"])),
        ("DBC", _SEX_CODES[truth["sex"]] if truth["sex"] else "9"),
        ("DAY", truth["eye_color"] or "UNK"),
        ("DAU", truth["height"].replace(" IN", " in") if truth["height"] else ""),
        ("DAG", address["street"]),
        ("DAI", address["city"]),
        ("DAJ", address["state"]),
        # ZIP+4 with the unknown +4 zero-filled, padded to 11 characters as the standard asks
        ("DAK", f"{address['postal_code']}0000".ljust(11)),
        ("DCF", truth["document_discriminator"] or _NONE),
        ("DCG", truth["country"]),
        ("DDE", "N"),
        ("DDF", "N"),
        ("DDG", "N"),
    ]
    if truth["hair_color"]:
        elements.append(("DAZ", truth["hair_color"]))
    if truth["weight_lb"] is not None:
        elements.append(("DAW", f"{truth['weight_lb']:03d}"))
    elements.append(("DAQ", truth["document_number"]))
    return [(tag, value) for tag, value in elements if value != ""]


def build_payload(truth: dict[str, Any], *, jurisdiction_version: int = 0) -> str:
    """The barcode text for a licence's ground truth (the issuer comes from `issuing_state`)."""
    iin = by_code(truth["issuing_state"]).iin
    body = ELEMENT_SEPARATOR.join(tag + value for tag, value in _elements(truth))
    subfile = "DL" + body + SEGMENT_TERMINATOR
    offset = _HEADER_LENGTH + _DESIGNATOR_LENGTH
    header = (
        f"{COMPLIANCE}{ELEMENT_SEPARATOR}{RECORD_SEPARATOR}{SEGMENT_TERMINATOR}{FILE_TYPE}"
        f"{iin}{AAMVA_VERSION:02d}{jurisdiction_version:02d}01"
    )
    return f"{header}DL{offset:04d}{len(subfile):04d}{subfile}"


def _subfile(payload: str) -> tuple[str, str]:
    """(IIN, the DL subfile's text without its type and terminator)."""
    start = payload.find(FILE_TYPE)
    if not payload.startswith(COMPLIANCE) or start < 0:
        raise ValueError("not an AAMVA payload: no '@' compliance indicator or 'ANSI ' file type")
    iin = payload[start + 5 : start + 11]
    entries = int(payload[start + 15 : start + 17])
    for n in range(entries):
        at = start + 17 + n * _DESIGNATOR_LENGTH
        kind, offset, length = (
            payload[at : at + 2],
            int(payload[at + 2 : at + 6]),
            int(payload[at + 6 : at + 10]),
        )
        if kind in ("DL", "ID"):
            text = payload[offset : offset + length]
            # some issuers get offsets wrong by a few bytes; fall back to finding the subfile by its type
            if not text.startswith(kind):
                found = payload.find(kind + "DA", start + 17 + entries * _DESIGNATOR_LENGTH)
                text = payload[found:] if found >= 0 else ""
            return iin, text[2:].split(SEGMENT_TERMINATOR, 1)[0]
    raise ValueError("AAMVA payload has no DL or ID subfile")


def _fields(subfile: str) -> dict[str, str]:
    return {line[:3]: line[3:].strip() for line in subfile.split(ELEMENT_SEPARATOR) if len(line) >= 3}


def _optional(fields: dict[str, str], tag: str) -> str | None:
    value = fields.get(tag)
    return None if value in (None, "", _NONE, "UNK") else value


def _given_names(fields: dict[str, str]) -> str:
    parts = [fields.get("DAC", ""), _optional(fields, "DAD") or ""]
    return " ".join(part for part in parts if part)


def _height(fields: dict[str, str]) -> str | None:
    value = _optional(fields, "DAU")
    return value.upper() if value else None


def parse(payload: str) -> dict[str, Any]:
    """Ground truth (docs/schema-fields.md, drivers_license) from a barcode's text."""
    iin, subfile = _subfile(payload)
    fields = _fields(subfile)
    jurisdiction = by_iin(iin)
    weight = _optional(fields, "DAW")
    return {
        "document_number": fields["DAQ"],
        "family_name": fields["DCS"],
        "given_names": _given_names(fields),
        "date_of_birth": _iso(fields["DBB"]),
        "issue_date": _iso(fields["DBD"]),
        "expiration_date": _iso(fields["DBA"]),
        "sex": _SEX_FROM_CODE.get(fields.get("DBC", "")),
        "eye_color": _optional(fields, "DAY"),
        "hair_color": _optional(fields, "DAZ"),
        "height": _height(fields),
        "weight_lb": int(weight) if weight else None,
        "address": {
            "street": fields["DAG"],
            "city": fields["DAI"],
            "state": fields["DAJ"],
            "postal_code": fields["DAK"][:5],
        },
        "issuing_state": jurisdiction.code if jurisdiction else fields["DAJ"],
        "vehicle_class": _optional(fields, "DCA"),
        "restrictions": _optional(fields, "DCB"),
        "endorsements": list(_optional(fields, "DCD") or ""),
        "document_discriminator": _optional(fields, "DCF"),
        "country": fields.get("DCG", "USA"),
    }
