"""Writing a dataset folder: one subfolder per document type and a metadata.jsonl with the ground truth.

Metadata lines (paths relative to the folder):
    {"file_name": "receipts/r001.jpg", "doc_type": "receipt", "ground_truth": {...}, "boxes": {...}}
    {"file_names": ["licences/l001_front.png", "licences/l001_back.png"], "doc_type": "drivers_license", ...}
A licence saved as PDF is one two-page file and so uses "file_name".
"boxes" says where each field was drawn: {"/total": {"page": 1, "box": [x0, y0, x1, y1]}, ...}, the box around
its ink (not its glyphs' advance cells, as OCR boxes words) in fractions of the page's width and height, page
counted from 1. Fields not written as text on the page
(currency, payment method, signature present, the issuing state) and null ones have none.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bayou.synthetic.check import generate_check
from bayou.synthetic.common import SyntheticDocument, document_rng
from bayou.synthetic.drivers_license import generate_licence
from bayou.synthetic.output import EXTENSIONS, FORMATS, encode
from bayou.synthetic.receipt import LONG_ITEMS, SHORT_ITEMS, generate_receipt

DOC_TYPES = ("receipt", "drivers_license", "check")
METADATA = "metadata.jsonl"
_FOLDERS = {"receipt": ("receipts", "r"), "drivers_license": ("licences", "l"), "check": ("checks", "c")}
# resolution each generator draws at, so a PDF page gets the document's physical size
_DPI = {"receipt": 200, "drivers_license": 300, "check": 200}
# receipts cycle short, any length, long, so even a tiny set has both extremes
_RECEIPT_SIZES: tuple[int | None, ...] = (SHORT_ITEMS, None, LONG_ITEMS)

# PNG files come from scanners (a noisy phone photo would also make a PNG several MB), JPEG from phones,
# PDF from either
_CAPTURE_BY_FORMAT: dict[str, str | None] = {"png": "scan", "jpeg": "photo", "pdf": None}

Progress = Callable[[int, int, dict[str, Any]], None]


def generate(
    doc_type: str, rng: random.Random, position: int, capture: str | None = None
) -> SyntheticDocument:
    """The `position`-th document of `doc_type` in a dataset, drawn from `rng`."""
    if doc_type == "receipt":
        return generate_receipt(
            rng, item_count=_RECEIPT_SIZES[position % len(_RECEIPT_SIZES)], capture=capture
        )
    if doc_type == "drivers_license":
        return generate_licence(rng, dpi=_DPI[doc_type], capture=capture)
    if doc_type == "check":
        return generate_check(rng, dpi=_DPI[doc_type], capture=capture)
    raise ValueError(f"unknown document type {doc_type!r}; expected one of {', '.join(DOC_TYPES)}")


def _file_names(doc_type: str, position: int, fmt: str, pages: int, digits: int) -> list[str]:
    folder, prefix = _FOLDERS[doc_type]
    stem = f"{folder}/{prefix}{position + 1:0{digits}d}"
    if fmt == "pdf" or pages == 1:
        return [stem + EXTENSIONS[fmt]]
    sides = ("front", "back") if pages == 2 else tuple(f"p{n + 1}" for n in range(pages))
    return [f"{stem}_{side}{EXTENSIONS[fmt]}" for side in sides]


def _write_document(
    out_dir: Path, document: SyntheticDocument, names: list[str], fmt: str, quality: int
) -> None:
    blobs = encode(document.pages, fmt, dpi=_DPI[document.doc_type], quality=quality)
    for name, blob in zip(names, blobs, strict=True):
        path = out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)


def _metadata_row(document: SyntheticDocument, names: list[str]) -> dict[str, Any]:
    files: dict[str, Any] = {"file_name": names[0]} if len(names) == 1 else {"file_names": names}
    return {
        **files,
        "doc_type": document.doc_type,
        "ground_truth": document.ground_truth,
        "boxes": document.boxes,
    }


def make_dataset(
    out_dir: str | Path,
    *,
    count: int,
    seed: int,
    types: Sequence[str] = DOC_TYPES,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Write `count` documents (types taken in turn) under `out_dir`; returns the metadata rows.

    Formats rotate PNG, JPEG, PDF within each type, starting at a different one per type, so that any set
    of three or more documents holds all three formats. The same seed always gives byte-identical files.
    """
    unknown = [t for t in types if t not in DOC_TYPES]
    if unknown or not types:
        raise ValueError(f"unknown document types {unknown}; expected some of {', '.join(DOC_TYPES)}")
    if count < 0:
        raise ValueError("count must be >= 0")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    digits = max(3, len(str(count)))
    rows = []
    for index in range(count):
        doc_type = types[index % len(types)]
        position = index // len(types)
        rng = document_rng(seed, doc_type, position)
        fmt = FORMATS[(position + DOC_TYPES.index(doc_type)) % len(FORMATS)]
        document = generate(doc_type, rng, position, _CAPTURE_BY_FORMAT[fmt])
        names = _file_names(doc_type, position, fmt, len(document.pages), digits)
        _write_document(out, document, names, fmt, quality=rng.randint(70, 90))
        rows.append(_metadata_row(document, names))
        if progress:
            progress(index + 1, count, rows[-1])
    with (out / METADATA).open("w", encoding="utf-8", newline="\n") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return rows
