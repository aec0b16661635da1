"""The CPU stage: a stored upload to stored page images, each with what was read on it (OCR words, a
licence's barcode) so that the GPU stage never runs OCR or decodes barcodes."""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING

from PIL import Image
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from storage.documents import PageImage, store_pages
from storage.errors import NotFound
from storage.models import DocumentStatus
from workers.documents import fail, skipped_if_deleted, start_attempt
from workers.outcomes import Outcome
from workers.runtime import Runtime

if TYPE_CHECKING:
    from extractor.pipeline import Rasterized

log = logging.getLogger(__name__)

S = DocumentStatus
_STARTABLE = frozenset({S.QUEUED, S.PROCESSING})


def rasterize_stored(runtime: Runtime, document_id: str) -> Outcome:
    """Rasterises the document's original file and stores its pages; a bad file fails the document
    with the file's error code (never retried: the bytes will not get better).

    Safe to run again: a retry or a redelivery of a document whose pages an earlier delivery stored
    (its extraction message then failed to go out, say) finds them and answers RASTERIZED at once, so
    the caller sends the extraction; a finished document is SKIPPED."""
    from extractor.pipeline import DocumentInput, rasterize_document, read_pages

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
        read_pages(rasterized, ocr_timeout_s=settings.ocr_timeout_s if settings.ocr else None)
        try:
            store_pages(session, runtime.blobs, document_id, _pages(rasterized), rasterize_ms=rasterized.ms)
        except (NotFound, IntegrityError, StaleDataError) as error:
            # store_pages rolled back and took its blobs back; a deleted document is no worker's error
            return skipped_if_deleted(
                session, document_id, error, "while being rasterised; its pages are dropped"
            )
    return Outcome.RASTERIZED


def _pages(rasterized: Rasterized) -> list[PageImage]:
    return [
        PageImage(_png(image), image.width, image.height, reading)
        for image, reading in zip(rasterized.images, rasterized.page_readings(), strict=True)
    ]


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    # PNG: lossless, so the GPU stage sees exactly the pixels rasterisation produced
    image.save(buffer, format="PNG")
    return buffer.getvalue()
