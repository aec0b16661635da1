"""Streaming exports of every matching document: JSON lines, or CSV with the data flattened into columns
named by JSON pointer (`data/items/0/price`).

CSV also carries where the model read each value (`result.locations`): two columns a located field,
`locations/items/0/price/page` (1-based) and `locations/items/0/price/box` ("x0 y0 x1 y1", fractions of
the page's width and height). Columns rather than one JSON cell: a spreadsheet can sort, filter and
compute on a page number or a coordinate, not on JSON. They are the model's run's, where its values
were found, also beside data a reviewer corrected.

The data exported is the document's final data: a reviewer's corrections where an approval made some,
else the model's output; `data_source` says which (`review` or `model`; empty without data). A JSON line
is the Document (its `result.data` is always the model's, its `review.data` the corrections) plus those
two keys, `data` and `data_source`.

A slow client must not hold a database connection: the documents are read a page at a time, each page in
a session of its own that is closed (its connection back in the pool, no transaction left open) before
that page's lines are handed to the client. Each export opens its own sessions: the response outlives
the request's injected one."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from fastapi.encoders import jsonable_encoder
from sqlalchemy.orm import Session, sessionmaker

from api.serialize import document_json, preload
from storage.documents import MAX_PAGE_SIZE, DocumentFilter, list_documents

BASE_COLUMNS = [
    "id",
    "filename",
    "doc_type",
    "status",
    "pages",
    "model",
    "created_at",
    "updated_at",
    "error/code",
    "result/valid",
    "review/action",
    "data_source",
]
PAGE_SIZE = MAX_PAGE_SIZE  # documents read per short session
# a spreadsheet runs a cell starting with one of these as a formula
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def export_pages(sessions: sessionmaker[Session], filters: DocumentFilter) -> Iterator[list[dict[str, Any]]]:
    """Every match, newest first, as exported JSON, a page at a time; no connection is held between
    pages (the keyset cursor, not an open transaction, remembers where the export is)."""
    cursor = None
    while True:
        with sessions() as session:
            page = list_documents(session, filters, limit=PAGE_SIZE, cursor=cursor)
            preload(session, page.items)
            documents = [export_json(document) for document in page.items]
        yield documents
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def export_json(document: Any) -> dict[str, Any]:
    """The Document JSON with the final `data` and its `data_source`."""
    shown = jsonable_encoder(document_json(document))
    shown["data"], shown["data_source"] = final_data(shown)
    return shown


def final_data(document: dict[str, Any]) -> tuple[Any, str | None]:
    """The reviewer's corrections when an approval made some, else the model's data; and which it is."""
    review = document.get("review") or {}
    if review.get("action") == "approve" and review.get("data") is not None:
        return review["data"], "review"
    data = (document.get("result") or {}).get("data")
    return (data, "model") if data is not None else (None, None)


def jsonl_lines(sessions: sessionmaker[Session], filters: DocumentFilter) -> Iterator[bytes]:
    for documents in export_pages(sessions, filters):
        yield "".join(json.dumps(document, ensure_ascii=False) + "\n" for document in documents).encode(
            "utf-8"
        )


def csv_chunks(sessions: sessionmaker[Session], filters: DocumentFilter) -> Iterator[bytes]:
    # two passes over the database instead of one over memory: the first learns the columns (data
    # fields differ between types and documents), the second writes the rows
    data_columns: dict[str, None] = {}
    for documents in export_pages(sessions, filters):
        for document in documents:
            for column in _flat_row(document):
                if column not in BASE_COLUMNS:
                    data_columns.setdefault(column, None)
    columns = BASE_COLUMNS + sorted(data_columns)
    buffer = io.StringIO()
    # rows added between the passes may bring columns the header lacks: those cells are dropped
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for documents in export_pages(sessions, filters):
        for document in documents:
            writer.writerow(_flat_row(document))
            if buffer.tell() > 64 * 1024:
                yield _drain(buffer)
    yield _drain(buffer)


def _drain(buffer: io.StringIO) -> bytes:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text.encode("utf-8")


def _flat_row(encoded: dict[str, Any]) -> dict[str, str]:
    row = {
        "id": encoded["id"],
        "filename": encoded["filename"],
        "doc_type": encoded["doc_type"],
        "status": encoded["status"],
        "pages": encoded["pages"],
        "model": encoded["model"],
        "created_at": encoded["created_at"],
        "updated_at": encoded["updated_at"],
        "error/code": (encoded["error"] or {}).get("code"),
        "result/valid": (encoded["result"] or {}).get("valid"),
        "review/action": (encoded["review"] or {}).get("action"),
        "data_source": encoded["data_source"],
    }
    if encoded["data"] is not None:
        row.update(flatten(encoded["data"], "data"))
    row.update(_location_columns((encoded["result"] or {}).get("locations") or {}))
    return {column: _cell(value) for column, value in row.items()}


def _location_columns(locations: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    # a location's pointer is a leaf's, so `<pointer>/page` can never be another field's pointer
    for pointer, where in locations.items():
        yield f"locations{pointer}/page", where["page"]
        yield f"locations{pointer}/box", " ".join(str(value) for value in where["box"])


def flatten(value: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """(pointer, scalar) pairs; keys escaped as in RFC 6901 so a key with '/' cannot fake a path."""
    if isinstance(value, dict):
        if not value:
            yield prefix, "{}"
        for key, item in value.items():
            escaped = str(key).replace("~", "~0").replace("/", "~1")
            yield from flatten(item, f"{prefix}/{escaped}")
    elif isinstance(value, list):
        if not value:
            yield prefix, "[]"
        for index, item in enumerate(value):
            yield from flatten(item, f"{prefix}/{index}")
    else:
        yield prefix, value


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if text.startswith(_FORMULA_STARTS) and not _is_number(text):
        return "'" + text
    return text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
