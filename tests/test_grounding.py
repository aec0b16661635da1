"""Grounding: locating values among OCR words, the value_on_page check, the combined confidence, and the
pipeline end to end on a committed sample with the real Tesseract."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from extractor.grounding.locate import locate
from extractor.grounding.verify import CHECK_NAME, combined_confidence, ground, not_on_page
from extractor.ocr import PageWords, Word
from extractor.pipeline import DocumentInput, Extractor, review_reasons
from extractor.result import Result
from tests.engines import FakeScriptedEngine
from tests.imaging import needs_tesseract

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


def _sample(name: str) -> dict[str, Any]:
    rows = [json.loads(line) for line in (SAMPLES / "metadata.jsonl").read_text().splitlines()]
    return next(row for row in rows if row.get("file_name") == name)


@needs_tesseract
def test_the_pipeline_locates_a_receipts_values_where_samples_make_drew_them() -> None:
    from extractor.grounding.measure import iou

    sample = _sample("receipts/r001.png")
    truth = sample["ground_truth"]
    wrong = {**truth, "total": "62.26"}
    document = DocumentInput.from_path(SAMPLES / "receipts/r001.png", "receipt")

    right_result = Extractor(FakeScriptedEngine(truth), ocr_timeout_s=30).extract([document])[0]
    wrong_result = Extractor(FakeScriptedEngine(wrong), ocr_timeout_s=30).extract([document])[0]

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


def _scored_page(*lines: list[tuple[str, float]]) -> PageWords:
    """Like _page, each word with its own OCR confidence."""
    page = _page(*[[text for text, _ in line] for line in lines])
    confidences = [confidence for line in lines for _, confidence in line]
    words = [Word(w.text, w.box, c, w.line) for w, c in zip(page.words, confidences, strict=True)]
    return PageWords(words=words)


def test_a_short_licence_value_is_placed_beside_its_label_even_when_run_into_it() -> None:
    # a stray "B" first in reading order; the endorsement's "M" before the sex field; OCR ran "SEX" into "M"
    page = _page(["B", "X"], ["9a", "END", "M"], ["15", "SEXM", "16", "HGT"], ["12", "RESTR", "B"])
    found = locate({"endorsements": ["M"], "sex": "M", "restrictions": "B"}, [page])
    sex = page.words[6].box
    assert found["/sex"].box[0] == pytest.approx(sex[0] + (sex[2] - sex[0]) * 3 / 4)
    assert found["/sex"].box[2] == pytest.approx(sex[2]) and found["/sex"].score == 1.0
    assert found["/endorsements"].box == page.words[4].box
    assert found["/restrictions"].box == page.words[11].box


def test_a_street_number_run_into_its_label_is_found() -> None:
    page = _page(["82215", "MAPLE", "WAY"])
    found = locate({"address": {"street": "2215 MAPLE WAY"}}, [page])
    first = page.words[0].box
    assert found["/address/street"].box[0] == pytest.approx(first[0] + (first[2] - first[0]) / 5)
    # without its label 8 the same glued number is no match for another street number
    assert "/address/street" not in locate({"address": {"street": "215 MAPLE WAY"}}, [page])


def test_a_misread_row_does_not_push_the_next_rows_quantities_down() -> None:
    # row 1's "1" read as "al" (two lines tall): its quantity must not take row 2's "1", nor row 2 row 3's
    page = _scored_page(
        [("al", 0.5), ("SHARP", 0.95), ("CHEDDAR", 0.95), ("3.79", 0.95)],
        [("1", 0.95), ("VANILLA", 0.95), ("5.52", 0.95)],
        [("1", 0.95), ("EGGS", 0.95), ("2.53", 0.95)],
    )
    items = [
        {"quantity": 1, "description": "SHARP CHEDDAR", "total_price": "3.79"},
        {"quantity": 1, "description": "VANILLA", "total_price": "5.52"},
        {"quantity": 1, "description": "EGGS", "total_price": "2.53"},
    ]
    found = locate({"items": items}, [page])
    assert found["/items/1/quantity"].box == page.words[4].box
    assert found["/items/2/quantity"].box == page.words[7].box
    # the first item's "1" is still somewhere on the page, so the check is what it was
    assert "/items/0/quantity" not in not_on_page({"items": items}, found)


def test_an_items_amount_is_the_rightmost_on_its_row_whatever_line_ocr_gives_it() -> None:
    # a tilted photo: OCR put the amount column's "2.81" on a line of its own, before the row's line
    amount = Word("2.81", (0.8, 0.10, 0.9, 0.14), 0.95, 0)
    row = _page(["1", "TAPE", "2.81"]).words
    words = [amount, *(Word(w.text, w.box, w.confidence, 1) for w in row)]
    data = {"items": [{"description": "TAPE", "quantity": 1, "unit_price": "2.81", "total_price": "2.81"}]}
    found = locate(data, [PageWords(words=words)])
    assert found["/items/0/total_price"].box == amount.box
    assert found["/items/0/unit_price"].box == words[3].box


def test_quantity_and_unit_price_read_as_one_word_are_split_at_the_at_sign() -> None:
    page = _page(["BANANAS", "1.46"], ["4@6.44"])
    data = {"items": [{"description": "BANANAS", "quantity": 4, "unit_price": "6.44", "total_price": "1.46"}]}
    found = locate(data, [page])
    word = page.words[2].box
    share = (word[2] - word[0]) / 6
    assert found["/items/0/quantity"].box[2] == pytest.approx(word[0] + share)
    assert found["/items/0/unit_price"].box[0] == pytest.approx(word[0] + 2 * share)


def test_an_unsure_amount_whose_point_was_read_as_a_character_matches() -> None:
    unsure = _scored_page([("TOTAL", 0.9), ("17259", 0.3)], [("TAX", 0.9), ("S212", 0.2)])
    found = locate({"total": "17.59", "tax": "5.12"}, [unsure])
    assert found["/total"].score == 0.85 and found["/tax"].score == 0.85
    # another amount is still no match, nor the same misreading where OCR was sure of it
    assert not_on_page({"total": "17.29"}, locate({"total": "17.29"}, [unsure])) == ["/total"]
    sure = _scored_page([("TOTAL", 0.9), ("17259", 0.9)])
    assert not_on_page({"total": "17.59"}, locate({"total": "17.59"}, [sure])) == ["/total"]


def test_a_near_miss_counts_only_where_the_differing_word_was_unsure() -> None:
    # the run's mean confidence is low, but the difference lies in the word OCR was sure of
    page = _scored_page([("1", 0.9), ("BARBARA", 0.95), ("OLIVIA", 0.1), ("GRACE", 0.1)])
    data = {"given_names": "BARBRA OLIVIA GRACE"}
    assert not_on_page(data, locate(data, [page])) == ["/given_names"]
    # the run's mean is confident, but the one difference lies in a word OCR was unsure of ("8OZ" as "g0z")
    page = _scored_page([("HAND", 0.97), ("SANITIZER", 0.93), ("GEL", 0.95), ("g0z", 0.5)])
    found = locate({"items": [{"description": "HAND SANITIZER GEL 8OZ"}]}, [page])
    assert 0.8 <= found["/items/0/description"].score < 0.9


def test_a_weight_is_found_as_printed_to_two_decimals() -> None:
    # seed 97's r009: "0.60 lb @ 1.92 /lb" for the quantity 0.6
    page = _page(["BROCCOLI", "CROWNS"], ["0.60", "lb", "@", "1.92", "/lb"])
    data = {"items": [{"description": "BROCCOLI CROWNS", "quantity": 0.6, "unit_price": "1.92"}]}
    found = locate(data, [page])
    assert found["/items/0/quantity"].box == page.words[2].box
    assert not_on_page(data, found) == []
    # another weight is still not on the page
    other = {"items": [{"description": "BROCCOLI CROWNS", "quantity": 0.7}]}
    assert not_on_page(other, locate(other, [page])) == ["/items/0/quantity"]


def test_an_at_sign_or_copyright_sign_read_for_a_zero_is_a_zero() -> None:
    # seed 97: "CS@1532729" for receipt number CS01532729, "©.28" and "@.54" for 0.28 and 0.54
    page = _page(["INV", "NO:", "CS@1532729"], ["BANANAS", "©.28"], ["APPLES", "@.54"], ["2@1.19"])
    data = {"receipt_number": "CS01532729", "tax": "0.28", "total": "0.54", "subtotal": "1.19"}
    found = locate(data, [page])
    assert not_on_page(data, found) == []
    assert found["/receipt_number"].box == page.words[2].box
    # "2@1.19" is still a quantity at its price, not "201.19"
    assert not_on_page({"total": "201.19"}, locate({"total": "201.19"}, [page])) == ["/total"]


def test_an_identifier_glued_to_a_misread_label_matches_with_look_alikes() -> None:
    # seed 97's l006: label "DLN" read "pLN", the number's 0 read "O", all one word
    page = _page(["4d", "pLNHGO83034"])
    found = locate({"document_number": "HG083034"}, [page])
    assert found["/document_number"].score == 0.85
    word = page.words[1].box
    assert found["/document_number"].box[0] == pytest.approx(word[0] + 3 * (word[2] - word[0]) / 11)
    # another document's number is not, nor a name, which look-alikes alone never make equal
    assert not_on_page({"document_number": "HG083084"}, locate({"document_number": "HG083084"}, [page]))
    names = _page(["2", "DONNALISA"])
    assert not_on_page({"given_names": "IISA"}, locate({"given_names": "IISA"}, [names])) == ["/given_names"]
