"""Grounding on the review page, without a browser: the checks carry their findings as data (stored and
served by REST), api.review.grounding shapes a run's locations and checks for the page, and the document page
renders the boxes, the not-found marks and the barcode's suggestions. tests/test_review_browser.py drives them."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from api.review.forms import build_form
from api.review.grounding import (
    Grounding,
    annotate,
    field_boxes,
    field_labels,
    not_found_pointers,
    suggested_values,
)
from extractor.grounding.barcode import BarcodeReading, barcode_check
from extractor.grounding.verify import ground
from extractor.ocr import PageWords, Word
from extractor.result import Result
from extractor.schemas import load_schema

LICENCE = {
    "family_name": "SMYTHE",
    "given_names": "ANA",
    "endorsements": ["H"],
    "address": {"street": "1 MAIN ST", "city": "DENVER", "state": "CO", "postal_code": "80202"},
}


# --- the checks' findings as data ------------------------------------------------------------------------


def test_a_failed_barcode_check_carries_the_barcodes_values_a_list_staying_a_list() -> None:
    barcode = {**LICENCE, "family_name": "SMITH", "endorsements": ["H", "T"]}
    check, suggestions = barcode_check(LICENCE, BarcodeReading(barcode))
    assert check["ok"] is False
    assert check["suggestions"] == {"/family_name": "SMITH", "/endorsements": ["H", "T"]} == suggestions
    # the message still reads as before: a list shows as the card prints it
    assert check["message"] == (
        "disagrees with the barcode at /family_name (barcode: SMITH), /endorsements (barcode: HT)"
    )
    agreeing, _ = barcode_check(LICENCE, BarcodeReading(dict(LICENCE)))
    assert agreeing["ok"] and "suggestions" not in agreeing


def test_a_failed_value_on_page_check_lists_the_pointers_it_did_not_find() -> None:
    words = [Word("TOTAL", (0.1, 0.1, 0.2, 0.15), 0.95, 0), Word("26.26", (0.3, 0.1, 0.4, 0.15), 0.95, 0)]
    result = Result(doc_type="receipt", model="m", data={"total": "26.26", "tax": "9.99"}, valid=True)
    ground(result, [PageWords(words=words)])
    check = next(c for c in result.checks if c["name"] == "value_on_page")
    assert (check["ok"], check["fields"]) == (False, ["/tax"])
    assert result.locations["/total"]["page"] == 1 and "/tax" not in result.locations


# --- shaping for the page ---------------------------------------------------------------------------------


def test_not_found_pointers_come_from_the_failed_check_or_its_message() -> None:
    named = {"name": "value_on_page", "ok": False, "message": "not found on the page: /a", "fields": ["/b"]}
    assert not_found_pointers([named]) == ["/b"]  # the data wins over the prose
    older = {
        "name": "value_on_page",
        "ok": False,
        "message": "not found on the page: /a, /c/0/d; no words on page 2 (timeout)",
    }
    assert not_found_pointers([older]) == ["/a", "/c/0/d"]
    passed = {"name": "value_on_page", "ok": True, "message": "every value was found on the page"}
    assert not_found_pointers([passed, {"name": "receipt_total_sum", "ok": False}]) == []
    assert not_found_pointers(None) == [] and not_found_pointers(["junk", 3]) == []


def test_suggestions_come_only_from_a_failed_barcode_check() -> None:
    failed = {
        "name": "license_barcode_agrees",
        "ok": False,
        "message": "…",
        "suggestions": {"/x": "A", 3: "B"},
    }
    assert suggested_values([failed]) == {"/x": "A"}
    assert suggested_values([{**failed, "ok": True}]) == {}
    assert suggested_values([{**failed, "suggestions": "not a mapping"}]) == {}


def _licence_fields(data: dict | None = None) -> list:
    return build_form(load_schema("drivers_license"), data if data is not None else LICENCE)


def _receipt_fields(receipt: dict) -> list:
    return build_form(load_schema("receipt"), receipt)


def test_labels_name_nested_fields_and_line_items_as_the_form_does(receipt_example) -> None:
    labels = field_labels(_receipt_fields(receipt_example))
    assert labels["/total"] == "Total"
    assert labels["/items/1/total_price"] == "Items row 2 › Total price"
    assert labels["/items/0"] == "Items row 1"
    assert field_labels(_licence_fields())["/address/city"] == "Address › City"


def test_boxes_are_checked_clamped_and_in_the_forms_order(receipt_example) -> None:
    labels = field_labels(_receipt_fields(receipt_example))
    locations = {
        "/total": {"page": 2, "box": [0.5, 0.8, 0.9, 0.85], "score": 1.0},
        "/merchant_name": {"page": 1, "box": [-0.01, 0.02, 0.5, 0.06], "score": 0.9},
        "/items/1/total_price": {"page": 1, "box": [0.8, 0.4, 1.2, 0.44], "score": 1.0},
        "/elsewhere/deep": {"page": 1, "box": [0.1, 0.1, 0.2, 0.2], "score": 1.0},
        "/tax": {"page": 3, "box": [0.1, 0.1, 0.2, 0.2]},  # past the document's pages
        "/tip": {"page": 1, "box": [0.1, 0.1, 0.2]},
        "/subtotal": {"page": 1, "box": [0.3, 0.1, 0.2, 0.2]},  # no width
        "/receipt_number": {"page": True, "box": [0.1, 0.1, 0.2, 0.2]},
        "/merchant_phone": {"page": 1, "box": [0.1, "0.1", 0.2, 0.2]},
        "/merchant_address": "nowhere",
    }
    boxes = field_boxes(locations, labels, pages=2)
    assert [b.pointer for b in boxes] == [
        "/merchant_name",
        "/items/1/total_price",
        "/total",
        "/elsewhere/deep",
    ]
    name, price, total, other = boxes
    assert name.box == (0.0, 0.02, 0.5, 0.06) and price.box == (0.8, 0.4, 1.0, 0.44)
    assert (price.label, price.page) == ("Items row 2 › Total price", 1)
    assert (total.label, total.page) == ("Total", 2)
    assert other.label == "Elsewhere › Deep"  # not on the form: named from its pointer
    assert total.percent == "50.000 80.000 40.000 5.000"
    assert field_boxes(None, labels, pages=2) == [] and field_boxes({"/total": {}}, labels, pages=0) == []


def test_annotate_marks_fields_and_gives_suggestions_in_the_forms_text() -> None:
    fields = _licence_fields()
    grounding = Grounding(
        not_found=["/family_name", "/address/city"],
        suggestions={"/family_name": "SMITH", "/endorsements": ["H", "T"], "/restrictions": None},
    )
    annotate(fields, grounding)
    by_pointer = {f.pointer: f for f in fields}
    city = next(c for c in by_pointer["/address"].children if c.pointer == "/address/city")
    assert by_pointer["/family_name"].not_found and city.not_found
    assert not by_pointer["/given_names"].not_found
    assert by_pointer["/family_name"].suggestion == "SMITH"
    assert by_pointer["/endorsements"].suggestion == "H, T"  # a list field reads comma separated
    assert by_pointer["/restrictions"].suggestion == ""  # the barcode has none: taking it empties the field
    assert by_pointer["/given_names"].suggestion is None


def test_grounding_findings_flag_their_fields_without_repeating_the_check_as_a_message() -> None:
    from types import SimpleNamespace

    from api.review.views import field_messages

    older_barcode = {"name": "license_barcode_agrees", "ok": False, "message": "disagrees at /x (barcode: 1)"}
    run = SimpleNamespace(errors=[], confidence={}, checks=[*FINDINGS, older_barcode])
    messages = field_messages(run)
    # named fields are flagged (and counted in the queue) by their marks, with no message of their own
    assert messages["/family_name"] == [] and messages["/address/city"] == []
    # a barcode check stored before it carried its suggestions is shown once, for the whole document
    assert messages[""] == ["check license_barcode_agrees: disagrees at /x (barcode: 1)"]
    fields = _licence_fields()
    annotate(fields, Grounding(not_found=["/family_name"]))
    flagged = {f.pointer for f in fields if f.flagged}
    assert flagged == {"/family_name"}


# --- REST and the review page -----------------------------------------------------------------------------


FINDINGS = [
    {"name": "license_date_order", "ok": True, "message": "dates in order"},
    {
        "name": "value_on_page",
        "ok": False,
        "message": "not found on the page: /family_name, /address/city",
        "fields": ["/family_name", "/address/city"],
    },
    {
        "name": "license_barcode_agrees",
        "ok": False,
        "message": "disagrees with the barcode at /family_name (barcode: SMITH)",
        "suggestions": {"/family_name": "SMITH"},
    },
]
LOCATED = {
    "/given_names": {"page": 1, "box": [0.1, 0.2, 0.3, 0.25], "score": 1.0},
    "/address/street": {"page": 2, "box": [0.1, 0.5, 0.6, 0.55], "score": 0.9},
}


def test_rest_serves_the_checks_findings_and_leaves_other_checks_as_they_were(review_client) -> None:
    document = review_client.review.document(
        data=LICENCE, doc_type="drivers_license", checks=FINDINGS, locations=LOCATED, pages=2
    )
    auth = {"Authorization": f"Bearer {review_client.key}"}
    shown = review_client.get(f"/v1/documents/{document}", headers=auth)
    assert shown.status_code == 200, shown.text
    assert shown.json()["result"]["checks"] == FINDINGS
    assert shown.json()["result"]["locations"] == LOCATED


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Page(HTMLParser):
    """Elements by id, and the field boxes, of a rendered review page."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, dict[str, str | None]] = {}
        self.boxes: list[dict[str, str | None]] = []
        self.text: dict[str, str] = {}
        self._open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.by_id[str(a["id"])] = a
        if "field-box" in str(a.get("class") or "").split():
            self.boxes.append(a)
        if tag not in VOID:  # no end tag follows
            self._open.append(str(a.get("id") or ""))

    def handle_endtag(self, tag: str) -> None:
        if self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for opened in self._open:
            if opened:
                self.text[opened] = self.text.get(opened, "") + data


def _page(client, document: str) -> Page:
    response = client.get(f"/review/documents/{document}")
    assert response.status_code == 200, response.text
    parsed = Page()
    parsed.feed(response.text)
    return parsed


def test_the_document_page_renders_boxes_marks_and_suggestions(review_client) -> None:
    document = review_client.review.document(
        data=LICENCE, doc_type="drivers_license", checks=FINDINGS, locations=LOCATED, pages=2
    )
    review_client.review.user()
    review_client.review.sign_in()
    page = _page(review_client, document)

    assert [(b["data-pointer"], b["data-page"], b["data-place"]) for b in page.boxes] == [
        ("/given_names", "1", "10.000 20.000 20.000 5.000"),
        ("/address/street", "2", "10.000 50.000 50.000 5.000"),
    ]
    family = page.by_id["f-family_name"]
    assert family["aria-describedby"] == "f-family_name-nf f-family_name-sg"
    assert "Not found on the page" in page.text["f-family_name-nf"]
    assert page.by_id["f-family_name-sg"]["data-value"] == "SMITH"
    assert re.search(r"Barcode:\s*SMITH", page.text["f-family_name-sg"])
    assert "Not found on the page" in page.text["f-address-city-nf"]
    assert page.by_id["f-address-city"]["aria-describedby"] == "f-address-city-nf"
    assert "aria-describedby" not in page.by_id["f-given_names"]
    assert "f-given_names-nf" not in page.by_id and "f-given_names-sg" not in page.by_id


def test_a_reviewed_document_keeps_its_boxes_but_no_marks(review_client) -> None:
    from api import reviewing

    document = review_client.review.document(
        data=LICENCE, doc_type="drivers_license", checks=FINDINGS, locations=LOCATED, pages=2
    )
    with review_client.review.state.sessions() as session:
        reviewing.approve(session, document, actor="user:sam@example.com", data=None, via="review_ui")
    review_client.review.user()
    review_client.review.sign_in()
    page = _page(review_client, document)
    assert len(page.boxes) == 2
    assert "f-family_name-nf" not in page.by_id and "f-family_name-sg" not in page.by_id


@pytest.mark.parametrize("where", [None, {"/given_names": "junk"}, {"/given_names": {"page": "1"}}])
def test_malformed_stored_locations_leave_the_page_working(review_client, where) -> None:
    document = review_client.review.document(data=LICENCE, doc_type="drivers_license", locations=where)
    review_client.review.user()
    review_client.review.sign_in()
    assert _page(review_client, document).boxes == []
