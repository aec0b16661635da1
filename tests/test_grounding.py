"""Grounding: locating values among OCR words, the value_on_page check, the combined confidence, and the
pipeline end to end on a committed sample with the real Tesseract."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from extractor.generation import GenerationOutput
from extractor.grounding.locate import locate
from extractor.grounding.verify import CHECK_NAME, combined_confidence, ground, not_on_page
from extractor.ocr import PageWords, Word
from extractor.pipeline import DocumentInput, Extractor, review_reasons
from extractor.result import Result

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def _page(*lines: list[str], confidence: float = 0.95) -> PageWords:
    """Words laid out left to right, one line per argument, 0.05 of the page high each."""
    words = []
    for number, line in enumerate(lines):
        x = 0.05
        for text in line:
            width = 0.02 * len(text)
            words.append(
                Word(text, (x, 0.05 + number * 0.06, x + width, 0.1 + number * 0.06), confidence, number)
            )
            x += width + 0.02
    return PageWords(words=words)


def test_money_dates_and_phone_numbers_match_as_printed() -> None:
    page = _page(
        ["Tel:", "(468)", "555-0159"],
        ["04/05/21", "12:02", "PM"],
        ["TOTAL", "$26.26"],
        ["TAX", "1,311.00"],
    )
    data = {
        "merchant_phone": "(468) 555-0159",
        "transaction_date": "2021-04-05",
        "transaction_time": "12:02",
        "total": "26.26",
        "tax": "1311.00",
    }
    found = locate(data, [page])
    assert set(found) == {"/merchant_phone", "/transaction_date", "/transaction_time", "/total", "/tax"}
    assert found["/total"].score == 1.0
    assert found["/merchant_phone"].box[0] == pytest.approx(page.words[1].box[0])  # "(468)", not "Tel:"
    assert found["/transaction_time"].box[2] == pytest.approx(page.words[5].box[2])  # through "PM"


def test_an_address_printed_in_pieces_is_one_box() -> None:
    # a check: the payer's street and city lines, with the check number and fraction beside them
    page = _page(
        ["STEVEN", "ROBERTS", "4461"], ["25839", "LAKE", "BLVD", "66-2738/2926"], ["DENVER,", "CO", "80202"]
    )
    found = locate({"payer_address": "25839 Lake Blvd, Denver, CO 80202"}, [page])
    box = found["/payer_address"].box
    assert box[1] == pytest.approx(page.words[3].box[1]) and box[3] == pytest.approx(page.words[-1].box[3])


def test_line_items_are_placed_row_by_row() -> None:
    # two rows with the same price, and a row whose unit price equals its total
    page = _page(
        ["1", "PVC", "ELBOW", "1.25", "1.25"],
        ["1", "TAPE", "1.25", "1.25"],
    )
    item = {"quantity": 1, "unit_price": "1.25", "total_price": "1.25"}
    data = {"items": [{"description": "PVC ELBOW", **item}, {"description": "TAPE", **item}]}
    found = locate(data, [page])
    row0, row1 = page.words[:5], page.words[5:]
    assert found["/items/0/total_price"].box == row0[4].box
    assert found["/items/0/unit_price"].box == row0[3].box
    assert found["/items/1/total_price"].box == row1[3].box
    assert found["/items/1/unit_price"].box == row1[2].box


def test_labels_run_into_values_and_micr_symbols_are_tolerated() -> None:
    page = _page(["19HAIRWHI", "16", "HGT5'-11\""], ["152926273851:", "5419824847498"])
    data = {"hair_color": "WHI", "height": "071 IN", "routing_number": "292627385"}
    assert set(locate(data, [page])) == {"/hair_color", "/height", "/routing_number"}


def test_confidently_read_near_misses_are_not_matches() -> None:
    page = _page(["1", "MOORE"], ["2", "BARBARA", "OLIVIA"], ["TOTAL", "26.26"])
    data = {"family_name": "MOORE", "given_names": "BARBRA OLIVIA", "total": "26.62"}
    assert not_on_page(data, locate(data, [page])) == ["/given_names", "/total"]
    # the same near miss where OCR itself was unsure is taken, below an exact match's score
    unsure = _page(["1", "MOORE"], ["2", "BARBARA", "OLIVIA"], confidence=0.4)
    found = locate({"given_names": "BARBRA OLIVIA"}, [unsure])
    assert 0.8 <= found["/given_names"].score < 0.9


def test_derived_fields_and_booleans_are_not_looked_for() -> None:
    data = {"currency": "USD", "payment_method": "cash", "signature_present": True, "total": "1.00"}
    assert not_on_page(data, {}) == ["/total"]


def _result(data: dict[str, Any], confidence: dict[str, float] | None = None) -> Result:
    return Result(doc_type="receipt", model="m", data=data, confidence=confidence or {}, valid=True)


def test_a_value_not_on_the_page_fails_the_check_and_sends_the_document_to_review() -> None:
    result = _result(
        {"merchant_name": "TRUE NORTH", "total": "99.99"}, {"/merchant_name": 0.99, "/total": 0.99}
    )
    ground(result, [_page(["TRUE", "NORTH"], ["TOTAL", "26.26"])])
    check = next(c for c in result.checks if c["name"] == CHECK_NAME)
    assert (check["ok"], check["message"]) == (False, "not found on the page: /total")
    assert result.confidence["/total"] == pytest.approx(0.99 * 0.3)
    assert result.confidence["/merchant_name"] == pytest.approx(0.99)
    assert "/merchant_name" in result.locations and "/total" not in result.locations
    assert "check value_on_page failed" in review_reasons(result)
    assert "low confidence at /total" in review_reasons(result)


def test_no_words_is_not_applicable_and_leaves_token_confidence() -> None:
    result = _result({"total": "26.26"}, {"/total": 0.9})
    ground(result, [PageWords(status="timeout")])
    check = result.checks[-1]
    assert check["ok"] and check["message"] == "not applicable: no OCR words (timeout)"
    assert result.confidence == {"/total": 0.9} and result.locations == {}


def test_a_failed_cross_field_check_halves_its_fields_confidence() -> None:
    result = _result({"subtotal": "1.00", "total": "2.00", "merchant_name": "X"})
    result.checks = [{"name": "receipt_total_sum", "ok": False, "message": "no"}]
    assert combined_confidence(result, None) == {"/subtotal": 0.5, "/total": 0.5, "/merchant_name": 1.0}


class ScriptedEngine:
    """FAKE standing in for the model: answers each request with the given JSON text."""

    name = "scripted"
    revision = "test"

    def __init__(self, answer: dict[str, Any]) -> None:
        self.text = json.dumps(answer)

    def fit(self, request: Any) -> None:
        return None

    def run(self, requests: list[Any]) -> list[GenerationOutput]:
        return [
            GenerationOutput(self.text, [], [], [], {}, prompt_tokens=1, finish_reason="stop")
            for _ in requests
        ]


def _sample(name: str) -> dict[str, Any]:
    rows = [json.loads(line) for line in (SAMPLES / "metadata.jsonl").read_text().splitlines()]
    return next(row for row in rows if row.get("file_name") == name)


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract-ocr not installed")
def test_the_pipeline_locates_a_receipts_values_where_samples_make_drew_them() -> None:
    from extractor.grounding.measure import iou

    sample = _sample("receipts/r001.png")
    truth = sample["ground_truth"]
    wrong = {**truth, "total": "62.26"}
    document = DocumentInput.from_path(SAMPLES / "receipts/r001.png", "receipt")

    right_result = Extractor(ScriptedEngine(truth), ocr_timeout_s=30).extract([document])[0]
    wrong_result = Extractor(ScriptedEngine(wrong), ocr_timeout_s=30).extract([document])[0]

    for pointer in ("/merchant_name", "/total", "/transaction_date", "/items/2/total_price"):
        assert iou(right_result.locations[pointer]["box"], sample["boxes"][pointer]["box"]) >= 0.5, pointer
    assert next(c for c in right_result.checks if c["name"] == CHECK_NAME)["ok"]
    assert right_result.timings_ms["ocr"] > 0
    check = next(c for c in wrong_result.checks if c["name"] == CHECK_NAME)
    assert not check["ok"] and "/total" in check["message"]


def test_localisation_counts_boxes_matched_on_their_page_and_eval_adds_them_up() -> None:
    from extractor.evaluation import Record, build_report
    from extractor.grounding.measure import located

    boxes = {
        "/total": {"page": 1, "box": [0.5, 0.5, 0.6, 0.55]},
        "/tax": {"page": 1, "box": [0.5, 0.4, 0.6, 0.45]},
        "/date": {"page": 1, "box": [0.1, 0.1, 0.3, 0.15]},
    }
    locations = {
        "/total": {"page": 1, "box": [0.51, 0.5, 0.6, 0.55], "score": 1.0},  # IoU 0.9
        "/tax": {"page": 1, "box": [0.55, 0.4, 0.7, 0.45], "score": 1.0},  # IoU 0.2
        "/date": {"page": 2, "box": [0.1, 0.1, 0.3, 0.15], "score": 1.0},  # another page
    }
    assert located(locations, boxes) == 1
    records = [
        Record("receipt", "m", f"r{n}.png", {"total": "1"}, {"total": "1"}, boxed=3, located=n)
        for n in (1, 2)
    ]
    assert build_report(records).as_dict()["localisation"] == {"m": {"receipt": {"located": 3, "boxed": 6}}}
