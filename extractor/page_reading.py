"""What the CPU stage read on a page, kept with the page so that the GPU stage never reads it again."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PageReading:
    """One page's readings as JSON, None where not read: its OCR words (`extractor.ocr.PageWords`), a
    licence's barcode (`extractor.grounding.barcode.BarcodeReading`). JSON, for the worker stores them
    in the page's row between the two stages."""

    words: dict[str, Any] | None = None
    barcode: dict[str, Any] | None = None
