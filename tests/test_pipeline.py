"""The pipeline end to end on the tiny checkpoint: files in, Results out, failures typed."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from PIL import Image
from reportlab.lib.pagesizes import letter
from reportlab.pdfgen import canvas

from extractor.engine import TransformersEngine
from extractor.pipeline import DocumentInput, Extractor, review_reasons
from extractor.result import Result
from extractor.schemas import load_schema
from tests.imaging import encode, noise


def _png(path: Path, size: tuple[int, int], seed: int = 0) -> Path:
    noise(*size, seed=seed).save(path)
    return path


def _pdf(path: Path, pages: int) -> Path:
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=letter, invariant=1)
    for number in range(pages):
        pdf.drawString(72, 700, f"Page {number + 1}: ACME STORE  TOTAL 12.30")
        pdf.showPage()
    pdf.save()
    path.write_bytes(buffer.getvalue())
    return path


@pytest.fixture(scope="module")
def extractor(tiny_model) -> Extractor:
    return Extractor(TransformersEngine(tiny_model, name="tiny"), max_tiles=2, max_new_tokens=700)


def test_good_and_bad_documents_in_one_batch(extractor: Extractor, tmp_path: Path) -> None:
    good = _png(tmp_path / "receipt.png", (500, 1100))
    bad = tmp_path / "fake.jpg"
    bad.write_bytes(b"definitely not a jpeg")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    results = extractor.extract([DocumentInput.from_path(p, "receipt") for p in (good, bad, empty)])
    ok, refused, nothing = results
    assert ok.error is None and ok.valid
    jsonschema.validate(ok.data, load_schema("receipt"))
    assert ok.pages == 1 and ok.tiles >= 1
    assert ok.tokens["generated"] > 0 and ok.tokens["prompt"] > 256
    assert {"rasterize", "preprocess", "generate", "total"} <= set(ok.timings_ms)
    assert ok.prompt_version.startswith("receipt/") and ok.schema_version
    assert refused.error["code"] == "unsupported_type" and refused.data is None
    assert nothing.error["code"] in {"empty_file", "unsupported_type"}


def test_multi_page_pdf_is_one_document(extractor: Extractor, tmp_path: Path) -> None:
    (result,) = extractor.extract([DocumentInput.from_path(_pdf(tmp_path / "check.pdf", 2), "check")])
    assert result.error is None
    assert result.pages == 2
    assert result.valid


def test_too_many_pages_is_refused_with_its_code(tiny_model, tmp_path: Path) -> None:
    from extractor.pipeline import Limits

    small = Extractor(TransformersEngine(tiny_model), limits=Limits(max_pages=2))
    (result,) = small.extract([DocumentInput.from_path(_pdf(tmp_path / "long.pdf", 3), "receipt")])
    assert result.error["code"] == "too_many_pages"


def test_unknown_type_is_a_failed_result(extractor: Extractor, tmp_path: Path) -> None:
    (result,) = extractor.extract([DocumentInput.from_path(_png(tmp_path / "x.png", (64, 64)), "passport")])
    assert result.error["code"] == "unknown_doc_type"


def test_review_reasons() -> None:
    clean = Result(doc_type="check", model="m", data={"a": 1}, valid=True, confidence={"/a": 0.9})
    assert review_reasons(clean) == []
    doubtful = Result(
        doc_type="check",
        model="m",
        data={"a": 1},
        valid=True,
        confidence={"/a": 0.2},
        checks=[{"name": "check_amounts_agree", "ok": False, "message": "x"}],
    )
    assert review_reasons(doubtful) == ["check check_amounts_agree failed", "low confidence at /a"]
    assert "output is not JSON" in review_reasons(Result(doc_type="check", model="m"))


def _bayou(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bayou.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
    )


def test_cli_extract_prints_one_result_per_file(tiny_checkpoint: Path, tmp_path: Path) -> None:
    good = _png(tmp_path / "a.png", (300, 600))
    bad = tmp_path / "b.jpg"
    bad.write_bytes(b"\x00" * 10)
    env = {"BAYOU_MODEL_800M": str(tiny_checkpoint), "BAYOU_DATA_DIR": str(tmp_path / "data")}
    run = _bayou("extract", str(good), str(bad), "--type", "receipt", "--max-tiles", "1", env=env)
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert run.returncode == 1, run.stderr  # one document was refused
    assert [line["file"] for line in lines] == [str(good), str(bad)]
    assert lines[0]["valid"] and lines[1]["error"]["code"] == "unsupported_type"


def test_cli_usage_and_configuration_errors_exit_2(tmp_path: Path) -> None:
    image = _png(tmp_path / "a.png", (100, 100))
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "cache"), "BAYOU_DATA_DIR": str(tmp_path)}
    unknown_type = _bayou("extract", str(image), "--type", "passport", env=env)
    assert unknown_type.returncode == 2 and "unknown document type" in unknown_type.stderr
    no_model = _bayou("extract", str(image), "--type", "receipt", env=env)
    assert no_model.returncode == 2 and "huggingface_hub cache" in no_model.stderr
    assert "bayou models tiny" in no_model.stderr  # the way to try it offline
    assert no_model.stdout == ""


def _png_bytes() -> bytes:
    return encode(noise(300, 300, seed=1), "PNG")


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda p: Image.new("RGB", (1, 1)).save(p), "unsupported_image"),
        (lambda p: Image.new("RGB", (4000, 3000)).save(p), "too_many_pixels"),
        (lambda p: p.write_bytes(_png_bytes()[:200]), "corrupt_file"),
    ],
    ids=["1x1", "over-pixel-cap", "truncated-png"],
)
def test_bad_images_fail_with_their_code(tiny_model, tmp_path: Path, make, code: str) -> None:
    from extractor.pipeline import Limits

    path = tmp_path / "bad.png"
    make(path)
    small_cap = Extractor(TransformersEngine(tiny_model), limits=Limits(max_pixels=10_000_000))
    (result,) = small_cap.extract([DocumentInput.from_path(path, "receipt")])
    assert result.error is not None and result.error["code"] == code
    assert result.data is None and result.raw_output == ""
