"""The CPU stage (rasterising, OCR, the licence barcode) runs without the model's libraries: a CPU worker
never loads torch, transformers or xgrammar (seconds at its first document, and their memory for nothing)."""

from __future__ import annotations

import json
import subprocess
import sys

MODEL_LIBRARIES = ("torch", "transformers", "xgrammar")


def test_the_cpu_stage_imports_no_model_library() -> None:
    code = (
        "import json, sys\n"
        "import workers.rasterizing\n"
        "from extractor.pipeline import DocumentInput, Limits, rasterize_document, read_pages\n"
        f"print(json.dumps([m for m in {MODEL_LIBRARIES!r} if m in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_the_extractor_still_builds_its_engine_request() -> None:
    from extractor.engine import EngineRequest
    from extractor.pipeline import DocumentInput, Extractor, Limits, rasterize_document

    class RecordingFakeEngine:
        """FAKE engine: records the request it is asked to fit, fits nothing."""

        name = "fake"
        revision = "none"

        def __init__(self) -> None:
            self.seen: list[object] = []

        def fit(self, request):
            from extractor.errors import InputError

            self.seen.append(request)
            raise InputError("no tile fits", code="context_too_long")

        def run(self, requests):
            raise AssertionError("nothing fits, nothing runs")

    import io

    from PIL import Image

    engine = RecordingFakeEngine()
    png = io.BytesIO()
    Image.new("RGB", (64, 48), "white").save(png, format="PNG")
    rasterized = rasterize_document(DocumentInput(sources=[png.getvalue()], doc_type="receipt"), Limits())
    (result,) = Extractor(engine).extract_rasterized([rasterized])
    assert isinstance(engine.seen[0], EngineRequest) and engine.seen[0].schema is not None
    assert result.error["code"] == "context_too_long"
