"""The extraction pipeline: load → rasterise → preprocess → generate → parse → validate → Result.

Each stage is a function of plain data; `Extractor` strings them together for a batch of documents so
that the model sees them in one batched generate call. A document that fails a stage becomes a failed
Result with a typed error code; the others go on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from extractor.errors import BayouError, InputError
from extractor.grounding.barcode import LICENCE_TYPE, BarcodeReading, read_barcodes
from extractor.grounding.verify import ground, witness_barcode
from extractor.ocr import PageWords, read_words
from extractor.page_reading import PageReading
from extractor.parsing import parse_json_output
from extractor.pixel_budget import DEFAULT_MAX_DOCUMENT_PIXELS
from extractor.prompts import build_prompt
from extractor.rasterize import rasterize
from extractor.result import Result
from extractor.schemas import load_schema
from extractor.validation import validate

if TYPE_CHECKING:  # the model side (torch, transformers, xgrammar): the CPU stage must not import it
    from extractor.engine import Engine, EngineRequest
    from extractor.generation import GenerationOutput

LOW_CONFIDENCE = 0.5  # a field below this sends the document to review


@dataclass(frozen=True)
class Limits:
    max_pages: int = 20
    max_pixels: int = 89_478_485  # a page
    max_document_pixels: int = DEFAULT_MAX_DOCUMENT_PIXELS  # all pages of a document together
    dpi: int = 200


@dataclass
class DocumentInput:
    """One document: a file, or several files that are one document (a licence's front and back)."""

    sources: list[Path | bytes]
    doc_type: str
    name: str = ""

    @classmethod
    def from_path(cls, path: str | Path, doc_type: str) -> DocumentInput:
        return cls(sources=[Path(path)], doc_type=doc_type, name=str(path))


@dataclass
class Rasterized:
    document: DocumentInput
    images: list[Image.Image] = field(default_factory=list)
    ms: float = 0.0
    error: BayouError | None = None
    # each page's OCR words (extractor.ocr); None: not read, so the result has no locations
    words: list[PageWords] | None = None
    # a licence's pages' barcode readings (extractor.grounding.barcode; None: that page not decoded)
    barcodes: list[BarcodeReading | None] = field(default_factory=list)

    def page_readings(self) -> list[PageReading]:
        """What was read on each page, to be stored with it."""
        count = len(self.images)
        words = self.words or [None] * count
        barcodes = self.barcodes or [None] * count
        return [
            PageReading(
                words=None if page is None else page.to_json(),
                barcode=None if reading is None else reading.to_json(),
            )
            for page, reading in zip(words, barcodes, strict=True)
        ]

    @classmethod
    def from_stored(
        cls,
        document: DocumentInput,
        images: list[Image.Image],
        readings: list[PageReading],
        *,
        ms: float,
    ) -> Rasterized:
        """A document the CPU stage rasterised and read earlier: its pages, with what `page_readings` gave."""
        words = [reading.words for reading in readings]
        return cls(
            document,
            images=images,
            ms=ms,
            # no words on any page: OCR was off (or the pages predate it), so no grounding at all
            words=None if all(page is None for page in words) else [PageWords.from_json(p) for p in words],
            barcodes=[BarcodeReading.from_json(reading.barcode) for reading in readings],
        )


def rasterize_document(document: DocumentInput, limits: Limits) -> Rasterized:
    started = time.perf_counter()
    images: list[Image.Image] = []
    try:
        load_schema(document.doc_type)  # an unknown type fails here, before any work
        for position, source in enumerate(document.sources):
            # each file an equal share of the pixels the files before it left (a licence's front and back)
            used = sum(image.width * image.height for image in images)
            share = (limits.max_document_pixels - used) // (len(document.sources) - position)
            images += rasterize(
                source,
                dpi=limits.dpi,
                max_pages=limits.max_pages - len(images),
                max_pixels=limits.max_pixels,
                max_document_pixels=share,
            )
    except BayouError as error:
        return Rasterized(document, error=error, ms=_ms(started))
    return Rasterized(document, images=images, ms=_ms(started))


def read_pages(rasterized: Rasterized, *, ocr_timeout_s: float | None) -> None:
    """The CPU stage's reading of a rasterised document, which the GPU stage weighs the model's answer
    against: each page's OCR words (`ocr_timeout_s` a page's budget; None: OCR off) and, for a licence,
    its AAMVA barcode. `bayou extract` and the rasterising worker both read pages through this."""
    if rasterized.error is not None:
        return
    if ocr_timeout_s is not None:
        rasterized.words = [read_words(image, timeout_s=ocr_timeout_s) for image in rasterized.images]
    if rasterized.document.doc_type == LICENCE_TYPE:
        rasterized.barcodes = read_barcodes(rasterized.images)


def finish(
    output: GenerationOutput, rasterized: Rasterized, *, model: str, revision: str, constrained: bool
) -> Result:
    """Parse and validate the model's text into a Result."""
    document = rasterized.document
    prompt = build_prompt(document.doc_type)
    parsed = parse_json_output(output.text)
    result = Result(
        doc_type=document.doc_type,
        model=model,
        raw_output=output.text,
        confidence=output.confidence,
        tiles=output.tiles,
        tiles_per_page=output.tiles_per_page,
        tokens={"prompt": output.prompt_tokens, "generated": output.generated_tokens},
        file=document.name or None,
        pages=len(rasterized.images),
        model_revision=revision,
        prompt_version=prompt.version,
        schema_version=prompt.schema_version,
        constrained=constrained,
        finish_reason=output.finish_reason,
    )
    if not parsed.ok:
        result.errors = [{"path": "", "message": f"output is not JSON: {parsed.error}"}]
        return result
    validation = validate(document.doc_type, parsed.data)
    result.data = validation.data
    result.errors = [{"path": e.path, "message": e.message} for e in validation.errors]
    result.checks = [{"name": c.name, "ok": c.ok, "message": c.message} for c in validation.checks]
    result.valid = validation.schema_ok
    return result


def review_reasons(result: Result, *, low_confidence: float = LOW_CONFIDENCE) -> list[str]:
    """Why a person should look at this result; empty when it can go straight through."""
    reasons = []
    if result.data is None:
        reasons.append("output is not JSON")
    if result.errors:
        reasons.append(f"{len(result.errors)} schema error(s)")
    reasons += [f"check {c['name']} failed" for c in result.checks if not c["ok"]]
    reasons += [f"low confidence at {p}" for p, c in sorted(result.confidence.items()) if c < low_confidence]
    return reasons


class Extractor:
    def __init__(
        self,
        engine: Engine,
        *,
        constrained: bool = True,
        max_tiles: int | None = None,
        max_new_tokens: int = 2048,
        limits: Limits | None = None,
        ocr_timeout_s: float | None = None,
    ) -> None:
        """`ocr_timeout_s`: read each page's words (a page's time budget) for grounding; None: don't."""
        self.engine = engine
        self.ocr_timeout_s = ocr_timeout_s
        self.constrained = constrained
        self.max_tiles = max_tiles
        self.max_new_tokens = max_new_tokens
        self.limits = limits or Limits()

    def extract(self, documents: list[DocumentInput]) -> list[Result]:
        batch = [rasterize_document(d, self.limits) for d in documents]
        for rasterized in batch:
            read_pages(rasterized, ocr_timeout_s=self.ocr_timeout_s)
        return self.extract_rasterized(batch)

    def extract_rasterized(self, batch: list[Rasterized]) -> list[Result]:
        """Generate for the documents that rasterised, in one batch; the others come back failed."""
        started = time.perf_counter()
        prepared = [self._prepared(r) for r in batch]
        batch = [rasterized for rasterized, _ in prepared]
        ready = [(rasterized, request) for rasterized, request in prepared if request is not None]
        answers = self.engine.run([request for _, request in ready]) if ready else []
        outputs = {id(rasterized): output for (rasterized, _), output in zip(ready, answers, strict=True)}
        generate_ms = _ms(started)
        results = []
        for rasterized in batch:
            if rasterized.error is not None:
                results.append(self._failed(rasterized))
                continue
            output = outputs[id(rasterized)]
            result = finish(
                output,
                rasterized,
                model=self.engine.name,
                revision=self.engine.revision,
                constrained=self.constrained,
            )
            witness_barcode(result, rasterized.barcodes)
            if rasterized.words is not None:
                grounded = time.perf_counter()
                ground(result, rasterized.words)
                result.timings_ms["ocr"] = round(sum(page.ms for page in rasterized.words), 2)
                result.timings_ms["locate"] = _ms(grounded)
            preprocess = output.timings_ms.get("preprocess", 0.0)
            result.timings_ms = {
                **result.timings_ms,
                "rasterize": rasterized.ms,
                "preprocess": preprocess,
                "generate": round(
                    generate_ms - sum(o.timings_ms.get("preprocess", 0.0) for o in outputs.values()), 2
                ),
                **{k: v for k, v in output.timings_ms.items() if k in ("vision", "prefill", "decode")},
            }
            result.timings_ms["total"] = round(rasterized.ms + generate_ms, 2)
            results.append(result)
        return results

    def _prepared(self, rasterized: Rasterized) -> tuple[Rasterized, EngineRequest | None]:
        """The document's request with its tiles fitted to the context; no request for a failed document
        (one that failed before, or `context_too_long`: even one tile a page leaves no room to answer)."""
        if rasterized.error is not None:
            return rasterized, None
        request = self._request(rasterized)
        try:
            request.fitted = self.engine.fit(request)
        except InputError as error:
            return replace(rasterized, error=error), None
        return rasterized, request

    def _request(self, rasterized: Rasterized) -> EngineRequest:
        from extractor.engine import EngineRequest  # here: see the TYPE_CHECKING import above

        doc_type = rasterized.document.doc_type
        return EngineRequest(
            images=rasterized.images,
            question=build_prompt(doc_type).text,
            schema=load_schema(doc_type) if self.constrained else None,
            max_new_tokens=self.max_new_tokens,
            max_tiles=self.max_tiles,
        )

    def _failed(self, rasterized: Rasterized) -> Result:
        error = rasterized.error
        assert error is not None
        return Result(
            doc_type=rasterized.document.doc_type,
            model=self.engine.name,
            file=rasterized.document.name or None,
            error={"code": error.code, "message": error.message},
            timings_ms={"rasterize": rasterized.ms, "total": rasterized.ms},
            constrained=self.constrained,
        )


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
