"""The value_on_page check, and the per-field confidence that folds grounding and the checks in.

A value is on the page when the locator found it with a score of at least FOUND. Fields whose values the
schema derives (currency, payment method, issuing state) and booleans are not looked for, so never named.

Per-field confidence (README, "Confidence"): token probability × page factor × check factor, where
- page factor: the location's score (1.0 exact, 0.9 OCR look-alikes, 0.85 glued to a label) when found;
  NOT_FOUND_FACTOR (0.3) when the value is nowhere on the page; 1.0 when not looked for or not applicable
  (no words: OCR off, empty or unreadable page, past its time budget);
- check factor: FAILED_CHECK_FACTOR (0.5) for the fields a failed cross-field check reads, else 1.0.
So a value the page does not show falls below the review threshold (0.5) whatever its token probability.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from extractor.grounding.locate import Location, leaves, locate
from extractor.ocr import PageWords
from extractor.result import Result

if TYPE_CHECKING:
    from extractor.grounding.barcode import BarcodeReading

FOUND = 0.8
NOT_FOUND_FACTOR = 0.3
FAILED_CHECK_FACTOR = 0.5
CHECK_NAME = "value_on_page"
# the fields each cross-field check reads (extractor/checks.py)
CHECK_FIELDS: dict[str, tuple[str, ...]] = {
    "receipt_items_sum": ("/subtotal", "/items"),
    "receipt_total_sum": ("/subtotal", "/tax", "/tip", "/total"),
    "check_amount_words": ("/amount_numeric", "/amount_words"),
    "check_routing_number": ("/routing_number",),
    "check_date_plausible": ("/date",),
    "license_date_order": ("/date_of_birth", "/issue_date", "/expiration_date"),
    "license_age_at_issue": ("/date_of_birth", "/issue_date"),
    "license_state_codes": ("/address/state", "/issuing_state"),
}


def not_on_page(data: Any, locations: dict[str, Location]) -> list[str]:
    """Pointers of the values that are nowhere on the page."""
    return [
        pointer for pointer, _ in leaves(data) if pointer not in locations or locations[pointer].score < FOUND
    ]


def ground(result: Result, pages: list[PageWords]) -> None:
    """Adds locations, the value_on_page check and the combined confidence to a parsed `result`."""
    if result.data is None:
        return
    unreadable = [n for n, page in enumerate(pages, start=1) if page.status != "ok"]
    if not pages or len(unreadable) == len(pages):
        reasons = sorted({page.status for page in pages}) or ["no pages"]
        message = f"not applicable: no OCR words ({', '.join(reasons)})"
        result.checks.append({"name": CHECK_NAME, "ok": True, "message": message})
        result.confidence = combined_confidence(result, None)
        return
    locations = locate(result.data, pages)
    # a value not found (a weak near miss included) has no location, as the contract says
    result.locations = {p: where.to_json() for p, where in locations.items() if where.score >= FOUND}
    missing = not_on_page(result.data, locations)
    result.checks.append(_check(missing, unreadable, pages))
    result.confidence = combined_confidence(result, locations)


def _check(missing: list[str], unreadable: list[int], pages: list[PageWords]) -> dict[str, Any]:
    note = ""
    if unreadable:
        note = "; no words on page " + ", ".join(f"{n} ({pages[n - 1].status})" for n in unreadable)
    if missing:
        return {
            "name": CHECK_NAME,
            "ok": False,
            "message": "not found on the page: " + ", ".join(missing) + note,
            # the same pointers as data, so the review page can mark the fields without reading prose
            "fields": missing,
        }
    return {"name": CHECK_NAME, "ok": True, "message": "every value was found on the page" + note}


def combined_confidence(result: Result, locations: dict[str, Location] | None) -> dict[str, float]:
    """token probability × page factor × check factor, for every value looked for or scored."""
    data = result.data or {}
    failed = {c["name"] for c in result.checks if not c["ok"] and c["name"] != CHECK_NAME}
    doubted = [field for name in failed for field in CHECK_FIELDS.get(name, ())]
    pointers = dict.fromkeys([*result.confidence, *(p for p, _ in leaves(data))])
    combined = {}
    for pointer in pointers:
        token = result.confidence.get(pointer, 1.0)
        page = 1.0
        if locations is not None and pointer in dict(leaves(data)):
            location = locations.get(pointer)
            page = location.score if location is not None and location.score >= FOUND else NOT_FOUND_FACTOR
        check = FAILED_CHECK_FACTOR if any(_within(pointer, field) for field in doubted) else 1.0
        combined[pointer] = round(token * page * check, 4)
    return combined


def witness_barcode(result: Result, barcodes: list[BarcodeReading | None]) -> None:
    """A licence: the license_barcode_agrees check against its pages' barcode readings (read in the CPU
    stage); each disagreeing field's confidence is halved (a failed check), and the document goes to
    review."""
    from extractor.grounding.barcode import LICENCE_TYPE, barcode_check, licence_reading

    if result.data is None or result.doc_type != LICENCE_TYPE:
        return
    check, suggestions = barcode_check(result.data, licence_reading(barcodes))
    result.checks.append(check)
    for pointer in suggestions:
        if pointer in result.confidence:
            result.confidence[pointer] = round(result.confidence[pointer] * FAILED_CHECK_FACTOR, 4)


def _within(pointer: str, field: str) -> bool:
    return pointer == field or pointer.startswith(field + "/")
