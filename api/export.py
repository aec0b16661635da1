"""Streaming exports of every matching document: JSON lines, or CSV with the result data flattened into
columns named by JSON pointer (`data/items/0/price`). Each export opens its own session: the response
outlives the request's injected one."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from fastapi.encoders import jsonable_encoder
from sqlalchemy.orm import Session, sessionmaker

from api.serialize import document_json
from storage.documents import DocumentFilter, iter_documents

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
]
# a spreadsheet runs a cell starting with one of these as a formula
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def jsonl_lines(sessions: sessionmaker[Session], filters: DocumentFilter) -> Iterator[bytes]:
    with sessions() as session:
        for document in iter_documents(session, filters):
            line = json.dumps(jsonable_encoder(document_json(document)), ensure_ascii=False)
            yield (line + "\n").encode("utf-8")


def csv_chunks(sessions: sessionmaker[Session], filters: DocumentFilter) -> Iterator[bytes]:
    # two passes over the database instead of one over memory: the first learns the columns (data
    # fields differ between types and documents), the second writes the rows
    with sessions() as session:
        data_columns: dict[str, None] = {}
        for document in iter_documents(session, filters):
            for column in _flat_row(document_json(document)):
                if column not in BASE_COLUMNS:
                    data_columns.setdefault(column, None)
        columns = BASE_COLUMNS + sorted(data_columns)
        buffer = io.StringIO()
        # rows added between the passes may bring columns the header lacks: those cells are dropped
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for document in iter_documents(session, filters):
            writer.writerow(_flat_row(document_json(document)))
            if buffer.tell() > 64 * 1024:
                yield _drain(buffer)
        yield _drain(buffer)


def _drain(buffer: io.StringIO) -> bytes:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text.encode("utf-8")


def _flat_row(document: dict[str, Any]) -> dict[str, str]:
    encoded = jsonable_encoder(document)
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
    }
    data = (encoded["result"] or {}).get("data")
    if data is not None:
        row.update(flatten(data, "data"))
    return {column: _cell(value) for column, value in row.items()}


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
