"""A driver's licence's AAMVA PDF417 barcode as a second witness to the model's reading of the front.

The back of a US licence carries the front's data, machine-readable and checksummed. zxing-cpp decodes
the symbol (it tries rotated images itself), extractor.aamva.parse turns the payload into the
schema's fields, and `license_barcode_agrees` fails naming each field where the model and the barcode
disagree, with the barcode's value as the reviewer's suggestion. No readable barcode, or one that is not
an AAMVA licence payload: not applicable, saying which.

Decoding is CPU work: the rasterising stage reads each licence page (`read_barcodes`, through
extractor.pipeline.read_pages) and stores the readings with the pages (`pages.barcode`); the GPU stage
only combines what was stored (`licence_reading`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from PIL import Image

from extractor.aamva import parse
from extractor.grounding.normalise import normalise

CHECK_NAME = "license_barcode_agrees"
LICENCE_TYPE = "drivers_license"  # the only document type that carries one
NOT_FOUND = "no PDF417 barcode found"
NOT_AAMVA = "the PDF417 barcode is not an AAMVA licence payload"
NOT_READ = "the pages' barcodes were not read (pages stored before the CPU stage read them)"


@dataclass(frozen=True)
class BarcodeReading:
    fields: dict[str, Any] | None  # the schema's fields from the barcode; None when none was read
    reason: str = ""  # why there are none

    def to_json(self) -> dict[str, Any]:
        return {"fields": self.fields, "reason": self.reason}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> BarcodeReading | None:
        if data is None:
            return None
        return cls(data.get("fields"), str(data.get("reason", "")))


def read_page_barcode(image: Image.Image) -> BarcodeReading:
    """The fields of the page's AAMVA licence barcode, or why there are none."""
    import zxingcpp

    reason = NOT_FOUND
    for size in (1, 2):
        attempt = image if size == 1 else _twice_the_size(image)  # only when the page as it is gave none
        for symbol in zxingcpp.read_barcodes(attempt, formats=zxingcpp.BarcodeFormat.PDF417):
            try:
                return BarcodeReading(parse(symbol.bytes.decode("latin-1")))
            except (KeyError, ValueError, IndexError):
                reason = NOT_AAMVA
        if reason == NOT_AAMVA:  # a symbol was read: reading it larger gives the same bytes
            break
    return BarcodeReading(None, reason)


def _twice_the_size(image: Image.Image) -> Image.Image:
    """The page at twice its size: a card's PDF rasterised at 200 dpi draws the barcode's narrowest bars
    under two pixels wide, which zxing-cpp can miss on a slightly tilted card; at twice the size it reads
    them (seed 61's l002)."""
    return image.resize((image.width * 2, image.height * 2), Image.Resampling.BILINEAR)


def read_barcodes(images: list[Image.Image]) -> list[BarcodeReading | None]:
    """Each page's reading, the back (last page) first; the pages before the first AAMVA barcode found
    are not decoded (None): a licence's front has none, and decoding it would only cost CPU time."""
    readings: list[BarcodeReading | None] = [None] * len(images)
    for number in reversed(range(len(images))):
        reading = readings[number] = read_page_barcode(images[number])
        if reading.fields is not None:
            break
    return readings


def licence_reading(pages: list[BarcodeReading | None]) -> BarcodeReading:
    """The document's barcode from its pages' readings: the last page's AAMVA payload, else why none."""
    read = [page for page in pages if page is not None]
    for page in reversed(read):
        if page.fields is not None:
            return page
    if not read:
        return BarcodeReading(None, NOT_READ)
    return BarcodeReading(None, NOT_AAMVA if any(page.reason == NOT_AAMVA for page in read) else NOT_FOUND)


def read_licence_barcode(images: list[Image.Image]) -> BarcodeReading:
    """The fields of the first AAMVA licence barcode found, the back (last page) first."""
    return licence_reading(read_barcodes(images))


def _flat(value: Any, pointer: str = "") -> Iterator[tuple[str, Any]]:
    """(pointer, value) of each field; a list (endorsements) is one field, kept as the list."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _flat(inner, f"{pointer}/{key}")
    else:
        yield pointer, value


def _text(value: Any) -> str:
    # endorsements print as "HT" on the card and in the payload: a list compares as its joined codes
    return "".join(str(v) for v in value) if isinstance(value, list) else str(value)


def _same(model: Any, barcode: Any) -> bool:
    if model is None or barcode is None:
        return model is None and barcode is None
    return normalise(_text(model)) == normalise(_text(barcode))


def barcode_check(
    data: dict[str, Any] | None, reading: BarcodeReading
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The check, and the barcode's value for each field where the model disagrees with it (also in the
    failed check, as `suggestions`: {pointer: value})."""
    if reading.fields is None:
        return {"name": CHECK_NAME, "ok": True, "message": f"not applicable: {reading.reason}"}, {}
    model = dict(_flat(data or {}))
    suggestions = {p: v for p, v in _flat(reading.fields) if not _same(model.get(p), v)}
    if not suggestions:
        return {"name": CHECK_NAME, "ok": True, "message": "every field agrees with the barcode"}, {}
    shown = ", ".join(f"{p} (barcode: {'null' if v is None else _text(v)})" for p, v in suggestions.items())
    check = {
        "name": CHECK_NAME,
        "ok": False,
        "message": f"disagrees with the barcode at {shown}",
        # the values as data (a list stays a list), so the review page can offer each one to take
        "suggestions": dict(suggestions),
    }
    return check, suggestions
