"""Synthetic documents: determinism, ground-truth consistency, the licence barcode, the dataset and CLI."""

from __future__ import annotations

import json
import random
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import typer
import zxingcpp
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from bayou.synthetic.check import check_truth, routing_number
from bayou.synthetic.dataset import METADATA, make_dataset
from bayou.synthetic.drivers_license import generate_licence, licence_truth
from bayou.synthetic.receipt import LONG_ITEMS, SHORT_ITEMS, print_lines, random_sale
from bayou.synthetic.words import amount_to_words
from extractor import aamva, validation
from extractor.aba import is_valid_routing_number

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
SEEDS = st.integers(min_value=0, max_value=2**32 - 1)


def _listed_files(rows: list[dict[str, Any]]) -> list[str]:
    return [
        name for row in rows for name in ([row["file_name"]] if "file_name" in row else row["file_names"])
    ]


def _read_metadata(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / METADATA).read_text(encoding="utf-8").splitlines()]


def _tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    folder = tmp_path_factory.mktemp("dataset")
    return folder, make_dataset(folder, count=6, seed=11)


# --- determinism -----------------------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes(dataset: tuple[Path, list[dict[str, Any]]], tmp_path: Path) -> None:
    folder, _ = dataset
    make_dataset(tmp_path, count=6, seed=11)
    first, second = _tree_bytes(folder), _tree_bytes(tmp_path)
    assert first.keys() == second.keys()
    assert [name for name in first if first[name] != second[name]] == []


def test_different_seed_gives_different_documents(
    dataset: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    folder, rows = dataset
    other = make_dataset(tmp_path, count=3, seed=12)
    assert [row["ground_truth"] for row in other] != [row["ground_truth"] for row in rows[:3]]
    same_names = [name for name in _listed_files(other) if (folder / name).exists()]
    assert same_names and all((folder / n).read_bytes() != (tmp_path / n).read_bytes() for n in same_names)


# --- the dataset folder ----------------------------------------------------------------------------------


def test_metadata_lists_existing_files_of_every_type_and_format(
    dataset: tuple[Path, list[dict[str, Any]]],
) -> None:
    folder, rows = dataset
    assert _read_metadata(folder) == rows
    assert {row["doc_type"] for row in rows} == {"receipt", "drivers_license", "check"}
    names = _listed_files(rows)
    assert all((folder / name).is_file() and (folder / name).stat().st_size > 1000 for name in names)
    assert {Path(name).suffix for name in names} == {".png", ".jpg", ".pdf"}
    licences = [row for row in rows if row["doc_type"] == "drivers_license"]
    assert any(len(row.get("file_names", [])) == 2 for row in licences)  # front + back images


def test_licence_pdf_has_two_pages(tmp_path: Path) -> None:
    # the second licence of a dataset is the PDF one: formats rotate png/jpeg/pdf from an offset per type
    rows = make_dataset(tmp_path, count=2, seed=3, types=("drivers_license",))
    pdf = tmp_path / rows[1]["file_name"]
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and len(re.findall(rb"/Type /Page\b(?!s)", data)) == 2
    assert b"D:20000101000000" in data  # reportlab's invariant creation date, not today's


def test_make_dataset_rejects_unknown_type(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown document types"):
        make_dataset(tmp_path, count=1, seed=0, types=("passport",))


# --- receipts ----------------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(seed=SEEDS)
def test_receipt_arithmetic_is_consistent(seed: int) -> None:
    sale = random_sale(random.Random(seed))
    truth = sale.ground_truth()
    items = [Decimal(item["total_price"]) for item in truth["items"]]
    assert sum(items, Decimal("0")) == Decimal(truth["subtotal"])
    tip = Decimal(truth["tip"]) if truth["tip"] is not None else Decimal("0")
    assert Decimal(truth["subtotal"]) + Decimal(truth["tax"]) + tip == Decimal(truth["total"])
    for item in truth["items"]:
        if item["quantity"] is not None:
            product = Decimal(str(item["quantity"])) * Decimal(item["unit_price"])
            assert abs(product - Decimal(item["total_price"])) <= Decimal("0.005")
    # what the model will read is what the ground truth says
    printed = "\n".join(line.text for line in print_lines(sale, 42))
    assert truth["total"] in printed and truth["subtotal"] in printed and truth["merchant_name"] in printed


@pytest.mark.parametrize("count", [SHORT_ITEMS, LONG_ITEMS])
def test_receipt_lengths(count: int) -> None:
    assert len(random_sale(random.Random(count), item_count=count).ground_truth()["items"]) == count


# --- licences and the AAMVA barcode --------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "capture"), [(1, "photo"), (2, "scan"), (7, "photo")])
def test_licence_barcode_decodes_to_the_ground_truth(seed: int, capture: str) -> None:
    document = generate_licence(random.Random(seed), capture=capture)
    assert len(document.pages) == 2
    found = zxingcpp.read_barcodes(document.pages[1])
    assert [barcode.format for barcode in found] == [zxingcpp.BarcodeFormat.PDF417]
    payload = found[0].bytes.decode("latin-1")
    assert payload.startswith("@\n\x1e\rANSI 6360")
    assert aamva.parse(payload) == document.ground_truth


@settings(max_examples=100, deadline=None)
@given(seed=SEEDS)
def test_aamva_payload_round_trips_and_dates_are_ordered(seed: int) -> None:
    truth = licence_truth(random.Random(seed))
    payload = aamva.build_payload(truth)
    offset, length = int(payload[23:27]), int(payload[27:31])
    assert payload[21:23] == "DL" and payload[offset : offset + 2] == "DL" and offset + length == len(payload)
    assert aamva.parse(payload) == truth
    assert truth["date_of_birth"] < truth["issue_date"] < truth["expiration_date"]
    age = int(truth["issue_date"][:4]) - int(truth["date_of_birth"][:4])
    assert 16 <= age <= 91 and truth["address"]["state"] == truth["issuing_state"]


def test_aamva_parse_rejects_other_text() -> None:
    with pytest.raises(ValueError, match="not an AAMVA payload"):
        aamva.parse("hello")


# --- checks ----------------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(seed=SEEDS)
def test_routing_numbers_pass_the_aba_checksum(seed: int) -> None:
    rng = random.Random(seed)
    assert is_valid_routing_number(routing_number(rng))
    truth = check_truth(rng)
    assert is_valid_routing_number(truth["routing_number"])
    assert truth["amount_words"] == amount_to_words(truth["amount_numeric"])


@pytest.mark.parametrize(
    ("amount", "words"),
    [
        ("0.05", "Zero and 05/100"),
        ("1.00", "One and 00/100"),
        ("13.10", "Thirteen and 10/100"),
        ("123.45", "One hundred twenty-three and 45/100"),
        ("1000.00", "One thousand and 00/100"),
        ("1234567.89", "One million two hundred thirty-four thousand five hundred sixty-seven and 89/100"),
    ],
)
def test_amount_in_words(amount: str, words: str) -> None:
    assert amount_to_words(amount) == words


# --- ground truth against the documented fields and the JSON Schemas ------------------------------------


def _documented_fields() -> dict[str, set[str]]:
    """Field names per document type from the tables in docs/schema-fields.md."""
    fields: dict[str, set[str]] = {}
    current = None
    for line in (REPO / "docs" / "schema-fields.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            current = line[3:].split()[0]
            fields[current] = set()
        elif current and line.startswith("| ") and not line.startswith(("| field", "| ---")):
            fields[current].add(line.split("|")[1].strip())
    return fields


def _truths() -> dict[str, list[dict[str, Any]]]:
    seeds = range(40)
    return {
        "receipt": [random_sale(random.Random(s)).ground_truth() for s in seeds],
        "drivers_license": [licence_truth(random.Random(s)) for s in seeds],
        "check": [check_truth(random.Random(s)) for s in seeds],
    }


def test_ground_truth_uses_the_documented_field_names() -> None:
    documented = _documented_fields()
    for doc_type, truths in _truths().items():
        assert all(set(truth) == documented[doc_type] for truth in truths), doc_type


def test_ground_truth_passes_the_schemas_and_cross_field_checks() -> None:
    for doc_type, truths in _truths().items():
        for truth in truths:
            result = validation.validate(doc_type, truth, normalise=False)
            assert result.ok, (doc_type, result.as_dict())


# --- the committed sample set and the CLI -------------------------------------------------------------


def test_committed_samples_are_listed_small_and_present() -> None:
    rows = _read_metadata(SAMPLES)
    listed = set(_listed_files(rows))
    on_disk = {str(p.relative_to(SAMPLES)) for p in SAMPLES.rglob("*") if p.is_file()}
    assert listed <= on_disk
    assert on_disk - listed == {METADATA, "README.md"}
    assert len(on_disk) <= 30
    assert sum((SAMPLES / name).stat().st_size for name in on_disk) <= 5 * 1024 * 1024
    assert {row["doc_type"] for row in rows} == {"receipt", "drivers_license", "check"}
    assert {Path(name).suffix for name in listed} == {".png", ".jpg", ".pdf"}


def test_cli_samples_make(tmp_path: Path) -> None:
    from bayou.cli.samples import register

    app = typer.Typer()
    register(app)

    @app.callback()
    def _root() -> None:  # a callback keeps `samples` a sub-command group even when it is the only one
        pass

    result = CliRunner().invoke(
        app, ["samples", "make", str(tmp_path / "out"), "--count", "2", "--seed", "4"]
    )
    assert result.exit_code == 0, result.output
    assert "wrote 2 documents" in result.output
    rows = _read_metadata(tmp_path / "out")
    assert [row["doc_type"] for row in rows] == ["receipt", "drivers_license"]
    assert all((tmp_path / "out" / name).is_file() for name in _listed_files(rows))


# --- where each field was drawn (metadata "boxes") -------------------------------------------------------


def _resolve(document: Any, pointer: str) -> Any:
    for part in pointer.strip("/").split("/"):
        document = document[int(part)] if isinstance(document, list) else document[part]
    return document


@pytest.mark.parametrize("degrees", [2.3, -1.7, 0.0])
def test_geometry_follows_pil_rotation_and_padding(degrees: float) -> None:
    import numpy as np
    from PIL import Image, ImageDraw

    from bayou.synthetic import effects

    clean = Image.new("RGB", (400, 300), (255, 255, 255))
    ImageDraw.Draw(clean).rectangle((300, 50, 320, 60), fill=(0, 0, 0))
    placed = effects.place_on_surface(
        clean, np.random.default_rng(0), 0.07, (255, 255, 255), texture=0.0, tilt=degrees
    )
    geometry = effects.surface_geometry(effects.Geometry(clean.size), 0.07, degrees)
    assert geometry.size == placed.size
    ys, xs = np.nonzero(np.asarray(placed.convert("L")) < 128)
    ink = (
        xs.min() / placed.width,
        ys.min() / placed.height,
        xs.max() / placed.width,
        ys.max() / placed.height,
    )
    # within two pixels of where the ink really landed
    assert geometry.fraction_box((300, 50, 321, 61)) == pytest.approx(ink, abs=2 / 300)


@pytest.mark.parametrize("seed", [3, 11])
def test_geometry_moves_boxes_with_the_crumple_warp(seed: int) -> None:
    import numpy as np
    from PIL import Image, ImageDraw

    from bayou.synthetic import effects

    clean = Image.new("RGB", (1200, 900), (255, 255, 255))
    marks = [(200 + 150 * i, 120 + 90 * i, 212 + 150 * i, 130 + 90 * i) for i in range(6)]
    for x0, y0, x1, y1 in marks:
        ImageDraw.Draw(clean).rectangle((x0, y0, x1 - 1, y1 - 1), fill=(0, 0, 0))
    warped, warp = effects.crumple_with_warp(clean, np.random.default_rng(seed), 1.0)
    # the warp is what crumple does: the same picture from the same draws
    assert warped.tobytes() == effects.crumple(clean, np.random.default_rng(seed), 1.0).tobytes()
    dark = np.asarray(warped.convert("L")) < 128
    geometry = effects.Geometry(clean.size).warped(warp).shifted(5, 7, (1210, 914))
    worst_unwarped = 0.0
    for x0, y0, x1, y1 in marks:
        ys, xs = np.nonzero(dark[y0 - 10 : y1 + 10, x0 - 10 : x1 + 10])
        ink = (x0 - 10 + xs.min() + 5, y0 - 10 + ys.min() + 7, x0 - 10 + xs.max() + 6, y0 - 10 + ys.max() + 8)
        recorded = [
            v * side
            for v, side in zip(geometry.fraction_box((x0, y0, x1, y1)), (1210, 914, 1210, 914), strict=True)
        ]
        # the recorded box is the ink's pixel bounds, to within a pixel (bilinear edges, rounding)
        assert recorded == pytest.approx(ink, abs=1.0)
        unwarped = (x0 + 5, y0 + 7, x1 + 5, y1 + 7)
        worst_unwarped = max(worst_unwarped, *(abs(a - b) for a, b in zip(unwarped, ink, strict=True)))
    # the marks did move, so a box that left the warp out would miss them
    assert worst_unwarped >= 2


def test_metadata_boxes_name_drawn_fields(dataset: tuple[Path, list[dict[str, Any]]]) -> None:
    _, rows = dataset
    for row in rows:
        boxes, truth = row["boxes"], row["ground_truth"]
        assert boxes, row["doc_type"]
        for pointer, where in boxes.items():
            assert _resolve(truth, pointer) not in (None, "", []), pointer
            x0, y0, x1, y1 = where["box"]
            assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1, pointer
            assert where["page"] == 1  # a licence's fields are on its front
        assert "/currency" not in boxes and "/country" not in boxes or row["doc_type"] == "drivers_license"
    expected = {
        "receipt": {
            "/merchant_name",
            "/total",
            "/subtotal",
            "/tax",
            "/transaction_date",
            "/items/0/total_price",
        },
        "check": {
            "/payee",
            "/amount_numeric",
            "/amount_words",
            "/date",
            "/routing_number",
            "/account_number",
        },
        "drivers_license": {"/family_name", "/document_number", "/date_of_birth", "/address/postal_code"},
    }
    for row in rows:
        assert expected[row["doc_type"]] <= row["boxes"].keys()


def test_metadata_boxes_lie_on_ink(dataset: tuple[Path, list[dict[str, Any]]]) -> None:
    """Each box holds dark print, and the same box moved well off it (a blank margin) does not."""
    import numpy as np
    from PIL import Image

    folder, rows = dataset
    receipt = next(r for r in rows if r["doc_type"] == "receipt" and r["file_name"].endswith(".png"))
    with Image.open(folder / receipt["file_name"]) as image:
        grey = np.asarray(image.convert("L"), dtype=np.float32)
    height, width = grey.shape
    for pointer in ("/merchant_name", "/total", "/items/0/description"):
        x0, y0, x1, y1 = receipt["boxes"][pointer]["box"]
        inside = grey[int(y0 * height) : int(y1 * height) + 1, int(x0 * width) : int(x1 * width) + 1]
        assert inside.min() < np.median(grey) - 60, pointer


def test_samples_metadata_has_boxes() -> None:
    rows = _read_metadata(SAMPLES)
    assert all(row["boxes"] for row in rows)


def _ink_between(mask: Any, left: float, right: float) -> tuple[int, int, int, int]:
    """The box of the mask's ink in the columns left..right (whole pixels), in mask coordinates."""
    ink = mask.crop((int(left), 0, int(right), mask.height)).getbbox()
    assert ink is not None
    return (ink[0] + int(left), ink[1], ink[2] + int(left), ink[3])


def test_receipt_box_of_a_narrow_glyph_is_its_ink_not_its_cell() -> None:
    """A quantity "1" is about half as wide as its monospace cell; OCR boxes the ink, so the box must too."""
    from PIL import Image

    from bayou.synthetic import effects
    from bayou.synthetic.receipt_render import _MARGIN, PrintLine, _draw_lines, _faces

    faces = _faces(42, 560)
    mask = Image.new("L", (600, 80), 0)
    boxes: dict[str, effects.Box] = {}
    line = PrintLine("1 x 24.66", marks=(("/items/0/quantity", 0, 1), ("/items/0/total_price", 4, 9)))
    _draw_lines(mask, [line], faces, 10, boxes)
    face = faces["normal"]
    cell = face.getlength("1")
    quantity = _ink_between(mask, _MARGIN, _MARGIN + face.getlength("1 "))
    assert tuple(boxes["/items/0/quantity"]) == quantity
    assert quantity[2] - quantity[0] < 0.8 * cell  # the point of the test: ink, not the advance
    assert tuple(boxes["/items/0/total_price"]) == _ink_between(mask, _MARGIN + face.getlength("1 x "), 600)


def test_micr_box_is_the_ink_of_its_characters() -> None:
    from PIL import Image, ImageDraw

    from bayou.synthetic.micr import _PITCH_IN, draw_micr, micr_box, micr_text

    dpi, x, baseline = 200, 110, 160
    text = micr_text("011000015", "1234567", "1001")
    mask = Image.new("L", (2400, 200), 0)
    draw_micr(ImageDraw.Draw(mask), text, x, baseline, dpi, 255)
    pitch = _PITCH_IN * dpi
    start = text.index("1234567")
    box = micr_box(text, start, start + 7, x, baseline, dpi)
    # the cells are 1/8 inch; the digits' ink starts and ends inside them
    assert x + start * pitch < box[0] and box[2] < x + (start + 7) * pitch
    assert tuple(box) == _ink_between(mask, x + start * pitch, x + (start + 7) * pitch)


@pytest.mark.parametrize(
    ("text", "anchor", "xy"),
    [
        ("1", None, (40.3, 30.6)),
        ("I", "ls", (77.8, 90.2)),
        ("24.66", "ra", (300.5, 60.0)),
        ("jW", "ms", (150, 80)),
    ],
)
def test_ink_box_is_what_the_text_draws(text: str, anchor: str | None, xy: tuple[float, float]) -> None:
    from PIL import Image, ImageDraw

    from bayou.synthetic.common import font, ink_box

    face = font("sans-bold", 31)
    canvas = Image.new("L", (400, 160), 0)
    ImageDraw.Draw(canvas).text(xy, text, font=face, fill=255, anchor=anchor)
    assert ink_box(xy, text, face, anchor) == canvas.getbbox()
