"""The licence barcode as a second witness: the real zxing-cpp on generated licence backs."""

from __future__ import annotations

import random
from typing import Any

import pdf417gen
from PIL import Image

from bayou.synthetic.drivers_license import generate_licence
from extractor.grounding.barcode import CHECK_NAME, barcode_check, read_licence_barcode
from extractor.grounding.verify import witness_barcode
from extractor.pipeline import review_reasons
from extractor.result import Result


def _licence(seed: int = 3) -> Any:
    return generate_licence(random.Random(seed), capture="photo")


def test_the_back_decodes_to_the_ground_truth_and_agrees_with_a_right_reading() -> None:
    licence = _licence()
    reading = read_licence_barcode(licence.pages)
    assert reading.fields == licence.ground_truth
    check, suggestions = barcode_check(licence.ground_truth, reading)
    assert check == {"name": CHECK_NAME, "ok": True, "message": "every field agrees with the barcode"}
    assert suggestions == {}


def test_a_wrong_reading_of_the_front_fails_naming_the_field_and_suggests_the_barcodes_value() -> None:
    licence = _licence()
    wrong = {**licence.ground_truth, "family_name": "SMYTHE"}
    result = Result(doc_type="drivers_license", model="m", data=wrong, confidence={"/family_name": 0.9})
    witness_barcode(result, licence.pages)
    check = result.checks[-1]
    family = licence.ground_truth["family_name"]
    assert (
        not check["ok"]
        and check["message"] == f"disagrees with the barcode at /family_name (barcode: {family})"
    )
    assert result.confidence["/family_name"] == 0.45
    assert f"check {CHECK_NAME} failed" in review_reasons(result)  # never straight to done


def test_a_rotated_back_is_still_read() -> None:
    licence = _licence()
    assert read_licence_barcode([licence.pages[1].rotate(90, expand=True)]).fields == licence.ground_truth


def test_no_barcode_or_a_foreign_one_is_not_applicable_with_its_reason() -> None:
    blank = Image.new("RGB", (600, 400), "white")
    check, _ = barcode_check({}, read_licence_barcode([blank]))
    assert check == {"name": CHECK_NAME, "ok": True, "message": "not applicable: no PDF417 barcode found"}
    garbage = pdf417gen.render_image(pdf417gen.encode("hello, not a licence", columns=6), scale=3).convert(
        "RGB"
    )
    check, _ = barcode_check({}, read_licence_barcode([garbage]))
    assert check["message"] == "not applicable: the PDF417 barcode is not an AAMVA licence payload"


def test_other_document_types_get_no_barcode_check() -> None:
    result = Result(doc_type="receipt", model="m", data={"total": "1.00"})
    witness_barcode(result, [Image.new("RGB", (10, 10))])
    assert result.checks == []
