"""The licence barcode as a second witness: the real zxing-cpp on generated licence backs, decoded in
the CPU stage (extractor.pipeline.read_pages) and only read by the GPU stage."""

from __future__ import annotations

import io
import random
from typing import Any

import pdf417gen
import pytest
from PIL import Image

from bayou.synthetic.drivers_license import generate_licence
from bayou.synthetic.output import encode
from extractor.grounding.barcode import (
    CHECK_NAME,
    NOT_AAMVA,
    NOT_READ,
    BarcodeReading,
    barcode_check,
    licence_reading,
    read_barcodes,
    read_licence_barcode,
    read_page_barcode,
)
from extractor.grounding.verify import witness_barcode
from extractor.pipeline import (
    DocumentInput,
    Extractor,
    Rasterized,
    rasterize_document,
    read_pages,
    review_reasons,
)
from extractor.rasterize import rasterize
from extractor.result import Result
from tests.engines import FakeScriptedEngine


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
    witness_barcode(result, read_barcodes(licence.pages))
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


def test_a_back_rasterised_small_from_a_pdf_is_read_at_twice_the_size() -> None:
    """A licence saved as a PDF and rasterised at bayou's 200 dpi: its narrowest bars are under two pixels
    wide on a slightly tilted card, which zxing-cpp misses at that size (3 of 120 such backs did)."""
    import zxingcpp

    licence = generate_licence(random.Random(1), dpi=300, capture="photo")
    back = rasterize(encode(licence.pages, "pdf", dpi=300, quality=85)[0])[-1]
    assert zxingcpp.read_barcodes(back, formats=zxingcpp.BarcodeFormat.PDF417) == []  # as the page is
    assert read_page_barcode(back).fields == licence.ground_truth


def test_no_barcode_or_a_foreign_one_is_not_applicable_with_its_reason() -> None:
    blank = Image.new("RGB", (600, 400), "white")
    check, _ = barcode_check({}, read_licence_barcode([blank]))
    assert check == {"name": CHECK_NAME, "ok": True, "message": "not applicable: no PDF417 barcode found"}
    garbage = pdf417gen.render_image(pdf417gen.encode("hello, not a licence", columns=6), scale=3).convert(
        "RGB"
    )
    check, _ = barcode_check({}, read_licence_barcode([garbage]))
    assert check["message"] == "not applicable: the PDF417 barcode is not an AAMVA licence payload"


def test_an_older_aamva_layout_is_not_applicable_through_the_whole_pipeline() -> None:
    """Version 01 cards name the holder in one DAA element, not DCS/DAC: not a payload we read."""
    from extractor.aamva import build_payload

    licence = _licence()
    truth = licence.ground_truth
    payload = build_payload(truth).replace(f"DCS{truth['family_name']}", f"DAA{truth['family_name']}")
    back = pdf417gen.render_image(pdf417gen.encode(payload, columns=12), scale=3).convert("RGB")
    document = DocumentInput([_png(licence.pages[0]), _png(back)], "drivers_license")
    (result,) = Extractor(FakeScriptedEngine(truth)).extract([document])
    check = next(c for c in result.checks if c["name"] == CHECK_NAME)
    assert check == {"name": CHECK_NAME, "ok": True, "message": f"not applicable: {NOT_AAMVA}"}
    assert result.error is None


def test_other_document_types_get_no_barcode_check() -> None:
    result = Result(doc_type="receipt", model="m", data={"total": "1.00"})
    witness_barcode(result, [BarcodeReading(None, "no PDF417 barcode found")])
    assert result.checks == []


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_back_is_decoded_first_and_the_front_then_left_alone() -> None:
    front, back = _licence().pages
    readings = read_barcodes([front, back])
    assert readings[0] is None and readings[1] is not None and readings[1].fields is not None
    # what the CPU stage stores with each page comes back the same for the GPU stage
    stored = [None if r is None else BarcodeReading.from_json(r.to_json()) for r in readings]
    assert licence_reading(stored) == readings[1]


def test_pages_stored_without_readings_are_not_applicable_saying_so() -> None:
    check, _ = barcode_check({}, licence_reading([None, None]))
    assert check == {"name": CHECK_NAME, "ok": True, "message": f"not applicable: {NOT_READ}"}


def test_bayou_extract_reads_the_barcode_in_the_cpu_stage_and_the_gpu_stage_only_uses_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import zxingcpp

    licence = _licence()
    document = DocumentInput([_png(page) for page in licence.pages], "drivers_license", name="licence")
    extractor = Extractor(FakeScriptedEngine(licence.ground_truth))

    (result,) = extractor.extract([document])  # `bayou extract`: both stages in one call
    assert {"name": CHECK_NAME, "ok": True, "message": "every field agrees with the barcode"} in result.checks

    rasterized = rasterize_document(document, extractor.limits)
    read_pages(rasterized, ocr_timeout_s=None)
    stored = Rasterized.from_stored(document, rasterized.images, rasterized.page_readings(), ms=0.0)

    def decoding(*_: Any, **__: Any) -> Any:
        raise AssertionError("the GPU stage decoded a barcode")

    monkeypatch.setattr(zxingcpp, "read_barcodes", decoding)
    (result,) = extractor.extract_rasterized([stored])  # the GPU worker: the stored readings only
    assert {"name": CHECK_NAME, "ok": True, "message": "every field agrees with the barcode"} in result.checks
