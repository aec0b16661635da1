"""The CPU stage: a stored upload to stored page images."""

from __future__ import annotations

import io
import logging
from typing import Any

from PIL import Image

from storage.documents import PageImage, store_pages
from storage.models import DocumentStatus
from workers.documents import fail, start_attempt
from workers.outcomes import Outcome
from workers.runtime import Runtime

log = logging.getLogger(__name__)

S = DocumentStatus
_STARTABLE = frozenset({S.QUEUED, S.PROCESSING})


def rasterize_stored(runtime: Runtime, document_id: str) -> Outcome:
    """Rasterises the document's original file and stores its pages; a bad file fails the document
    with the file's error code (never retried: the bytes will not get better).

    Safe to run again: a retry or a redelivery of a document whose pages an earlier delivery stored
    (its extraction message then failed to go out, say) finds them and answers RASTERIZED at once, so
    the caller sends the extraction; a finished document is SKIPPED."""
    from extractor.pipeline import DocumentInput, rasterize_document

    with runtime.sessions() as session:
        document = start_attempt(session, document_id, allowed=_STARTABLE)
        if document is None:
            return Outcome.SKIPPED
        if document.pages:
            # store_pages commits the page rows and the count together: a count means all pages are
            # there. Rasterising again would only rewrite the same rows under an extraction reading them
            log.info("document %s was rasterised by an earlier delivery", document_id)
            return Outcome.RASTERIZED
        source = DocumentInput(
            sources=[runtime.blobs.path(document.content_sha256)],
            doc_type=document.doc_type,
            name=document.filename,
        )
        settings = runtime.settings
        rasterized = rasterize_document(source, settings.limits())
        if rasterized.error is not None:
            log.info("document %s failed to rasterise: %s", document_id, rasterized.error.code)
            fail(session, document_id, rasterized.error.code, rasterized.error.message)
            return Outcome.FAILED
        words = _words(rasterized.images, settings.ocr, settings.ocr_timeout_s)
        pages = [_png(image, read) for image, read in zip(rasterized.images, words, strict=True)]
        store_pages(session, runtime.blobs, document_id, pages, rasterize_ms=rasterized.ms)
    return Outcome.RASTERIZED


def _words(images: list[Image.Image], enabled: bool, timeout_s: float) -> list[dict[str, Any] | None]:
    """Each page's OCR words (for grounding), here in the CPU stage so the GPU worker never runs OCR."""
    from extractor.ocr import read_words

    return [read_words(image, timeout_s=timeout_s).to_json() if enabled else None for image in images]


def _png(image: Image.Image, words: dict[str, Any] | None) -> PageImage:
    buffer = io.BytesIO()
    # PNG: lossless, so the GPU stage sees exactly the pixels rasterisation produced
    image.save(buffer, format="PNG")
    return PageImage(data=buffer.getvalue(), width=image.width, height=image.height, words=words)
