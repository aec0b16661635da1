"""Reading, listing, exporting, page images, reviews and deletion, on SQLite and on PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from PIL import Image
from sqlalchemy import event, func, select

from storage.documents import NewRun, PageImage, set_status, store_pages, store_run
from storage.models import AuditEntry, Document, DocumentStatus, ExtractionRun, Score


@pytest.fixture
def client(make_api_client, any_db_url):
    return make_api_client(database_url=any_db_url)


def _upload(client, content: bytes, doc_type: str = "receipt") -> dict:
    response = client.post(
        "/v1/documents", files={"file": ("r.png", content, "image/png")}, data={"doc_type": doc_type}
    )
    assert response.status_code == 202, response.text
    return response.json()


def _finish(
    client, document_id: str, *, data: dict, status=DocumentStatus.DONE, pages: int = 1, locations=None
) -> None:
    """What a worker would do: rasterise, extract, store the run and the outcome."""
    state = client.app.state.bayou
    with state.sessions() as session:
        set_status(session, document_id, DocumentStatus.PROCESSING)
        images = []
        for n in range(pages):
            buffer = io.BytesIO()
            Image.new("RGB", (30 + n, 20), (n, 0, 0)).save(buffer, format="PNG")
            images.append(PageImage(buffer.getvalue(), 30 + n, 20))
        store_pages(session, state.blobs, document_id, images)
        run = NewRun(
            model_id="h2ovl-800m",
            prompt_version="p1",
            schema_version="s1",
            raw_output=json.dumps(data),
            valid=True,
            data=data,
            confidence={"/total": 0.9},
            locations=locations or {"/total": {"page": 1, "box": [0.1, 0.2, 0.3, 0.4], "score": 1.0}},
            timings_ms={"total": 12.5},
            prompt_tokens=100,
            generated_tokens=20,
            tiles=2,
            tiles_per_page=[2] * pages,
        )
        store_run(session, document_id, "task-1", run, status=status)


def _error_code(response) -> str:
    return response.json()["error"]["code"]


def test_unknown_document_is_404_everywhere(client):
    for method, path in [
        ("get", "/v1/documents/doc_nope"),
        ("get", "/v1/documents/doc_nope/pages/1"),
        ("delete", "/v1/documents/doc_nope"),
        ("get", "/v1/batches/bat_nope"),
    ]:
        response = client.request(method, path)
        assert response.status_code == 404, path
        assert _error_code(response) == "not_found"
    response = client.post("/v1/documents/doc_nope/review", json={"action": "approve"})
    assert response.status_code == 404


def test_listing_or_exporting_an_unknown_doc_type_is_422_as_uploading_one_is(client):
    for export in ("json", "jsonl", "csv"):
        response = client.get("/v1/documents", params={"doc_type": "passport", "format": export})
        assert response.status_code == 422 and _error_code(response) == "unknown_doc_type", export
    assert client.get("/v1/documents", params={"doc_type": "receipt"}).status_code == 200


def test_unknown_route_and_wrong_method_keep_the_error_shape(client):
    assert client.get("/nope").json()["error"]["code"] == "not_found"
    response = client.put("/v1/documents")
    assert response.status_code == 405 and _error_code(response) == "method_not_allowed"
    assert response.headers["Allow"] == "GET, POST"
    assert client.put("/v1/documents/doc_x").headers["Allow"] == "DELETE, GET"


def test_document_shows_its_latest_result(client, make_png):
    document = _upload(client, make_png())
    _finish(client, document["id"], data={"total": "12.50"}, pages=2)
    shown = client.get(f"/v1/documents/{document['id']}").json()
    assert shown["status"] == "done" and shown["pages"] == 2
    assert shown["result"] == {
        "doc_type": "receipt",
        "model": "h2ovl-800m",
        "data": {"total": "12.50"},
        "raw_output": '{"total": "12.50"}',
        "valid": True,
        "errors": [],
        "checks": [],
        "confidence": {"/total": 0.9},
        "locations": {"/total": {"page": 1, "box": [0.1, 0.2, 0.3, 0.4], "score": 1.0}},
        "tiles": 2,
        "tiles_per_page": [2, 2],  # the response model once dropped it though the serialiser gave it
        "tokens": {"prompt": 100, "generated": 20},
        "timings_ms": {"total": 12.5},
    }


def test_pagination_is_newest_first_and_complete(client, make_png):
    ids = [_upload(client, make_png(seed))["id"] for seed in range(5)]
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        body = client.get("/v1/documents", params=params).json()
        seen += [item["id"] for item in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids)) and pages == 3


def test_list_filters_by_status_and_type(client, make_png):
    receipt = _upload(client, make_png(1))
    check = _upload(client, make_png(2), doc_type="check")
    _finish(client, check["id"], data={"amount": "1.00"})
    by_type = client.get("/v1/documents", params={"doc_type": "check"}).json()["items"]
    assert [item["id"] for item in by_type] == [check["id"]]
    by_status = client.get("/v1/documents", params={"status": "queued"}).json()["items"]
    assert [item["id"] for item in by_status] == [receipt["id"]]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"limit": 0}, "validation_error"),
        ({"limit": 501}, "validation_error"),
        ({"status": "lost"}, "validation_error"),
        ({"format": "xml"}, "validation_error"),
        ({"cursor": "not-a-cursor"}, "invalid_cursor"),
    ],
)
def test_bad_list_parameters_are_422(client, params, code):
    response = client.get("/v1/documents", params=params)
    assert response.status_code == 422 and _error_code(response) == code


def test_jsonl_export_streams_every_match(client, make_png):
    ids = [_upload(client, make_png(seed))["id"] for seed in range(3)]
    response = client.get("/v1/documents", params={"format": "jsonl", "limit": 1})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [line["id"] for line in lines] == list(reversed(ids))
    assert all(line["status"] == "queued" for line in lines)


def test_csv_export_flattens_data_into_pointer_columns(client, make_png):
    first = _upload(client, make_png(1))
    second = _upload(client, make_png(2))
    _finish(
        client,
        first["id"],
        data={"total": "=1+1", "items": [{"name": "tea", "price": "-2.00"}], "a/b": "x"},
    )
    response = client.get("/v1/documents", params={"format": "csv"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [row["id"] for row in rows] == [second["id"], first["id"]]
    done = rows[1]
    assert done["status"] == "done" and done["result/valid"] == "true"
    assert done["data/items/0/name"] == "tea"
    assert done["data/items/0/price"] == "-2.00"  # a number, left alone
    assert done["data/total"] == "'=1+1"  # a formula, defused
    assert done["data/a~1b"] == "x"
    assert rows[0]["data/total"] == ""


def test_csv_export_gives_each_located_field_a_page_and_a_box_column(client, make_png):
    located = _upload(client, make_png(1))["id"]
    queued = _upload(client, make_png(2))["id"]
    _finish(
        client,
        located,
        data={"total": "9.99", "items": [{"name": "tea", "price": "2.00"}]},
        pages=2,
        locations={
            "/total": {"page": 2, "box": [0.5, 0.25, 0.75, 0.3], "score": 1.0},
            "/items/0/name": {"page": 1, "box": [0.1, 0.2, 0.3, 0.4], "score": 0.9},
        },
    )
    rows = {
        row["id"]: row for row in csv.DictReader(io.StringIO(client.get("/v1/documents?format=csv").text))
    }
    row = rows[located]
    assert (row["locations/total/page"], row["locations/total/box"]) == ("2", "0.5 0.25 0.75 0.3")
    assert (row["locations/items/0/name/page"], row["locations/items/0/name/box"]) == ("1", "0.1 0.2 0.3 0.4")
    assert "locations/items/0/price/page" not in row  # not found on any page: no location
    assert rows[queued]["locations/total/page"] == rows[queued]["locations/total/box"] == ""


def test_page_image_is_the_stored_png(client, make_png):
    document = _upload(client, make_png())
    assert _error_code(client.get(f"/v1/documents/{document['id']}/pages/1")) == "page_not_found"
    _finish(client, document["id"], data={"total": "1.00"}, pages=2)
    response = client.get(f"/v1/documents/{document['id']}/pages/2")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).size == (31, 20)
    assert client.get(f"/v1/documents/{document['id']}/pages/3").status_code == 404
    assert client.get(f"/v1/documents/{document['id']}/pages/0").status_code == 422


def test_review_of_a_document_not_yet_done_is_409(client, make_png):
    document = _upload(client, make_png())
    response = client.post(f"/v1/documents/{document['id']}/review", json={"action": "approve"})
    assert response.status_code == 409 and _error_code(response) == "conflict"
    assert client.get(f"/v1/documents/{document['id']}").json()["status"] == "queued"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"action": "approve",', "malformed_json"),
        (b'{"action": "maybe"}', "validation_error"),
        (b'{"data": {}}', "missing_field"),
        (b'{"action": "approve", "data": [1, 2]}', "validation_error"),
        (b'{"action": "approve", "extra": 1}', "validation_error"),
    ],
)
def test_malformed_review_is_422(client, make_png, body, code):
    document = _upload(client, make_png())
    _finish(client, document["id"], data={"total": "1.00"})
    response = client.post(
        f"/v1/documents/{document['id']}/review",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422 and _error_code(response) == code
    assert client.get(f"/v1/documents/{document['id']}").json()["status"] == "done"


def test_review_approves_with_corrections_and_audits_names_not_values(client, make_png, receipt_example):
    document = _upload(client, make_png())
    _finish(client, document["id"], data=receipt_example, status=DocumentStatus.NEEDS_REVIEW)
    corrected = {**receipt_example, "total": "1.50"}
    response = client.post(
        f"/v1/documents/{document['id']}/review",
        json={"action": "approve", "data": corrected, "reason": "misread"},
    )
    assert response.status_code == 200, response.text
    shown = response.json()
    assert shown["status"] == "approved"
    assert shown["review"]["action"] == "approve" and shown["review"]["data"] == corrected
    with client.app.state.bayou.sessions() as session:
        entry = session.scalar(select(AuditEntry).where(AuditEntry.document_id == document["id"]))
    assert entry.action == "review.approve" and entry.detail == {"corrected_fields": ["/total"], "via": "api"}
    with client.app.state.bayou.sessions() as session:  # the correction is ground truth: the run is scored
        assert session.scalar(
            select(Score).join(ExtractionRun).where(ExtractionRun.document_id == document["id"])
        )
    again = client.post(f"/v1/documents/{document['id']}/review", json={"action": "reject"})
    assert again.status_code == 409


def test_delete_removes_the_row_and_its_blobs(client, make_png):
    kept = _upload(client, make_png(1))
    document = _upload(client, make_png(2))
    _finish(client, document["id"], data={"total": "1.00"}, pages=2)
    state = client.app.state.bayou
    assert len(list(state.blobs.iter_hashes())) == 4  # two uploads, two pages
    assert client.delete(f"/v1/documents/{document['id']}").status_code == 204
    assert client.get(f"/v1/documents/{document['id']}").status_code == 404
    assert client.delete(f"/v1/documents/{document['id']}").status_code == 404
    with state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Document)) == 1
        remaining = session.get(Document, kept["id"]).content_sha256
    assert list(state.blobs.iter_hashes()) == [remaining]


def test_a_failed_document_shows_its_error(client, make_png):
    document = _upload(client, make_png())
    with client.app.state.bayou.sessions() as session:
        set_status(session, document["id"], DocumentStatus.PROCESSING)
        set_status(
            session, document["id"], DocumentStatus.FAILED, error_code="corrupt_file", error_message="cut"
        )
    shown = client.get(f"/v1/documents/{document['id']}").json()
    assert shown["status"] == "failed"
    assert shown["error"] == {"code": "corrupt_file", "message": "cut"}


def test_logs_name_ids_never_field_values(client, make_png, caplog):
    document = _upload(client, make_png())
    _finish(client, document["id"], data={"name": "JANE Q PUBLIC"})
    with caplog.at_level("DEBUG"):
        client.get(f"/v1/documents/{document['id']}")
        client.post(
            f"/v1/documents/{document['id']}/review",
            json={"action": "approve", "data": {"name": "JANE Q CITIZEN"}, "reason": "typo"},
        )
        client.get("/v1/documents", params={"format": "csv"})
        client.delete(f"/v1/documents/{document['id']}")
    assert document["id"] in caplog.text
    assert "JANE" not in caplog.text and "typo" not in caplog.text


# --- exports carry the reviewed data, and hold no connection while a client reads (issue 15) ----------


def _review(client, document_id: str, action, data=None) -> None:
    from storage.documents import record_review

    with client.app.state.bayou.sessions() as session:
        record_review(session, document_id, actor="key:test", action=action, corrected_data=data)


def test_exports_carry_the_reviewed_data_and_say_whose_it_is(client, make_png):
    from storage.models import ReviewAction

    corrected, as_is, unreviewed, rejected = (_upload(client, make_png(seed))["id"] for seed in range(4))
    for document_id in (corrected, as_is, unreviewed, rejected):
        _finish(
            client,
            document_id,
            data={"total": "1.00", "items": [{"name": "tea"}]},
            status=DocumentStatus.NEEDS_REVIEW,
        )
    _review(client, corrected, ReviewAction.APPROVE, {"total": "1.50", "items": [{"name": "coffee"}]})
    _review(client, as_is, ReviewAction.APPROVE)
    _review(client, rejected, ReviewAction.REJECT)

    rows = {
        row["id"]: row for row in csv.DictReader(io.StringIO(client.get("/v1/documents?format=csv").text))
    }
    assert (rows[corrected]["data/total"], rows[corrected]["data/items/0/name"]) == ("1.50", "coffee")
    assert rows[corrected]["data_source"] == "review" and rows[corrected]["review/action"] == "approve"
    for document_id in (as_is, unreviewed, rejected):
        assert (rows[document_id]["data/total"], rows[document_id]["data_source"]) == ("1.00", "model")

    lines = {
        line["id"]: line
        for line in map(json.loads, client.get("/v1/documents?format=jsonl").text.splitlines())
    }
    assert lines[corrected]["data"] == {"total": "1.50", "items": [{"name": "coffee"}]}
    assert lines[corrected]["data_source"] == "review"
    assert lines[corrected]["result"]["data"]["total"] == "1.00"  # the model's, still there and labelled
    assert (lines[as_is]["data"]["total"], lines[as_is]["data_source"]) == ("1.00", "model")


def test_a_document_without_data_exports_an_empty_source(client, make_png):
    queued = _upload(client, make_png())["id"]
    [row] = csv.DictReader(io.StringIO(client.get("/v1/documents?format=csv").text))
    assert row["id"] == queued and row["data_source"] == ""


@pytest.mark.parametrize("export", ["jsonl_lines", "csv_chunks"])
def test_an_export_holds_no_database_connection_while_its_client_reads(client, make_png, monkeypatch, export):
    from api import export as exports
    from storage.documents import DocumentFilter

    monkeypatch.setattr(exports, "PAGE_SIZE", 2)
    ids = [_upload(client, make_png(seed))["id"] for seed in range(5)]
    state = client.app.state.bayou
    stream = getattr(exports, export)(state.sessions, DocumentFilter())

    first = next(stream)  # the client has this much and reads no further for now
    assert first
    assert state.engine.pool.checkedout() == 0
    rest = b"".join(stream)
    assert all(document_id.encode() in first + rest for document_id in ids)
    assert state.engine.pool.checkedout() == 0


# --- review data is checked before it becomes ground truth, and scored off the request path (issue 15) ---


def _unchanged(client, document_id: str) -> bool:
    from storage.models import Review

    with client.app.state.bayou.sessions() as session:
        reviews = session.scalar(
            select(func.count()).select_from(Review).where(Review.document_id == document_id)
        )
        audits = session.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.document_id == document_id)
        )
        status = session.get(Document, document_id).status
    return (reviews, audits, status) == (0, 0, DocumentStatus.NEEDS_REVIEW.value)


def _lines(count: int) -> list[dict]:
    return [
        {"description": f"line {n}", "quantity": 1, "unit_price": "1.00", "total_price": "1.00"}
        for n in range(count)
    ]


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"total": "a lot"}, "invalid_review_data"),  # fails the money pattern
        ({"unknown_field": "x"}, "invalid_review_data"),
        ({"items": _lines(1000)}, "invalid_review_data"),  # valid lines, past the schema's 100
        ({"items": _lines(1300)}, "review_data_too_large"),  # past the values a review may hold at all
        ({"merchant_name": "x" * 20_000}, "review_data_too_large"),
        (
            {"tip": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": {"j": {"k": {}}}}}}}}}}}}},
            "review_data_too_large",
        ),
    ],
)
def test_approved_data_that_does_not_fit_is_422_and_changes_nothing(
    client, make_png, receipt_example, change, code
):
    document_id = _upload(client, make_png())["id"]
    _finish(client, document_id, data=receipt_example, status=DocumentStatus.NEEDS_REVIEW)

    started = time.monotonic()
    response = client.post(
        f"/v1/documents/{document_id}/review",
        json={"action": "approve", "data": {**receipt_example, **change}},
    )
    assert time.monotonic() - started < 3  # 1,000 lines were 19 s of scoring in the request
    assert response.status_code == 422 and _error_code(response) == code
    assert "a lot" not in response.text  # paths are named, values never
    assert _unchanged(client, document_id)


def test_approving_invalid_extracted_data_as_is_is_422(client, make_png):
    document_id = _upload(client, make_png())["id"]
    _finish(client, document_id, data={"total": "1.00"}, status=DocumentStatus.NEEDS_REVIEW)
    response = client.post(f"/v1/documents/{document_id}/review", json={"action": "approve"})
    assert response.status_code == 422 and _error_code(response) == "invalid_review_data"
    assert "/merchant_name" in response.json()["error"]["message"]
    assert _unchanged(client, document_id)
    # a rejection needs no valid data
    assert client.post(f"/v1/documents/{document_id}/review", json={"action": "reject"}).status_code == 200


def test_a_review_is_answered_before_it_is_scored(client, make_png, receipt_example, monkeypatch):
    import dataclasses

    from api import reviewing

    sent: list[str] = []
    monkeypatch.setattr(reviewing, "send_score_review", sent.append)
    client.app.state.bayou = dataclasses.replace(
        client.app.state.bayou, workers=True
    )  # as under `bayou serve`
    document_id = _upload(client, make_png())["id"]
    _finish(client, document_id, data=receipt_example, status=DocumentStatus.NEEDS_REVIEW)
    # 100 lines unlike the extraction's: a tree edit distance of about a minute, were it computed here
    rewritten = {
        **receipt_example,
        "items": [{**line, "description": f"other {n}"} for n, line in enumerate(_lines(100))],
    }

    started = time.monotonic()
    response = client.post(
        f"/v1/documents/{document_id}/review", json={"action": "approve", "data": rewritten}
    )
    assert time.monotonic() - started < 3
    assert response.status_code == 200 and response.json()["status"] == "approved"
    assert sent == [document_id]  # the score is the cpu queue's to compute
    with client.app.state.bayou.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Score)) == 0


@contextmanager
def _document_loads(sessions) -> Iterator[list[str]]:
    """The SELECTs of the documents table that run inside the block."""
    engine = sessions.kw["bind"]
    loads: list[str] = []

    def note(conn, cursor, statement: str, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("SELECT") and re.search(r"\bFROM documents\b", statement):
            loads.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield loads
    finally:
        event.remove(engine, "before_cursor_execute", note)


def test_a_review_over_the_api_loads_its_document_once(client, make_png, receipt_example, monkeypatch):
    import dataclasses

    from api import reviewing

    monkeypatch.setattr(reviewing, "send_score_review", lambda document_id: None)
    client.app.state.bayou = dataclasses.replace(client.app.state.bayou, workers=True)
    document_id = _upload(client, make_png())["id"]
    _finish(client, document_id, data=receipt_example, status=DocumentStatus.NEEDS_REVIEW)

    with _document_loads(client.app.state.bayou.sessions) as loads:
        response = client.post(
            f"/v1/documents/{document_id}/review",
            json={"action": "approve", "data": {**receipt_example, "total": "15.78"}},
        )
    assert response.status_code == 200 and response.json()["status"] == "approved"
    # once to check and approve it, once more for the answer (the approval changed its status)
    assert len(loads) == 2, loads


def test_approving_a_loaded_document_scores_it_without_loading_it_again(client, make_png, receipt_example):
    from api import reviewing
    from storage.documents import get_document

    document_id = _upload(client, make_png())["id"]
    _finish(client, document_id, data=receipt_example, status=DocumentStatus.NEEDS_REVIEW)
    sessions = client.app.state.bayou.sessions
    with sessions() as session:
        document = get_document(session, document_id)
        with _document_loads(sessions) as loads:
            outcome = reviewing.approve(
                session, document, actor="key:test", data={**receipt_example, "total": "15.78"}, via="api"
            )
        assert loads == []
        assert outcome.corrected == ["/total"]
        assert outcome.score is not None and not outcome.score.perfect_match and outcome.score.f1 < 1


def test_a_review_that_rewrites_every_line_is_scored_within_the_budget(
    client, make_png, receipt_example, caplog
):
    """100 lines all unlike the extraction's: a minute of exact tree edit distance on the thread that
    serves documents under `bayou serve`; the budget makes it a top-down alignment, logged as such."""
    document_id = _upload(client, make_png())["id"]
    _finish(
        client,
        document_id,
        data={**receipt_example, "items": _lines(100)},
        status=DocumentStatus.NEEDS_REVIEW,
    )
    rewritten = {
        **receipt_example,
        "items": [{**line, "description": f"other {n}"} for n, line in enumerate(_lines(100))],
    }

    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="workers.review_scores"):
        response = client.post(  # an API without workers scores after the response, within this call
            f"/v1/documents/{document_id}/review", json={"action": "approve", "data": rewritten}
        )
    assert time.monotonic() - started < 15
    assert response.status_code == 200
    with client.app.state.bayou.sessions() as session:
        [score] = session.scalars(select(Score)).all()
    assert 0 < score.ted_accuracy < 1 and not score.perfect_match
    assert "approximated" in caplog.text


def test_the_review_score_is_computed_once(client, make_png, receipt_example):
    from workers.review_scores import score_review_in

    document_id = _upload(client, make_png())["id"]
    _finish(client, document_id, data=receipt_example, status=DocumentStatus.NEEDS_REVIEW)
    corrected = {**receipt_example, "total": "15.78"}
    assert (
        client.post(
            f"/v1/documents/{document_id}/review", json={"action": "approve", "data": corrected}
        ).status_code
        == 200
    )
    sessions = client.app.state.bayou.sessions
    score_review_in(sessions, document_id)  # a redelivered task
    with sessions() as session:
        [score] = session.scalars(select(Score)).all()
    assert score.ground_truth_source == "reviewed" and not score.perfect_match and score.f1 < 1
