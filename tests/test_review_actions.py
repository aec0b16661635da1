"""Reviewing in the UI: the queue, the document page, approve (as is or corrected, with its score),
reject with a reason, the audit trail."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import pytest
from sqlalchemy import select

from storage.models import AuditEntry, Document, Review, Score


class FormReader(HTMLParser):
    """The fields a browser would submit for the form with id `form_id`, as rendered."""

    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.form_id = form_id
        self.inside = False
        self.template_depth = 0
        self.values: dict[str, str] = {}
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.inside = a.get("id") == self.form_id
        if not self.inside:
            return
        if tag == "template":
            self.template_depth += 1
        if self.template_depth:
            return
        name = a.get("name")
        if tag == "input" and name:
            if a.get("type") == "checkbox":
                if "checked" in a:
                    self.values[name] = "on"
            else:
                self.values[name] = a.get("value") or ""
        elif tag == "select" and name:
            self._select = name
            self.values.setdefault(name, "")
        elif tag == "option" and self._select and "selected" in a:
            self.values[self._select] = a.get("value") or ""
        elif tag == "textarea" and name:
            self._textarea = name
            self.values[name] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "template" and self.inside:
            self.template_depth -= 1
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None
        elif tag == "form":
            self.inside = False

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.values[self._textarea] += data


def read_form(html: str, form_id: str = "approve-form") -> dict[str, str]:
    reader = FormReader(form_id)
    reader.feed(html)
    assert reader.values, f"no form {form_id}"
    return reader.values


@pytest.fixture
def signed_in(review_client):
    review_client.review.user()
    assert review_client.review.sign_in().status_code == 303
    return review_client


def rows(client, model, document_id: str) -> list[Any]:
    with client.review.state.sessions() as session:
        if model is Score:
            from storage.models import ExtractionRun

            statement = select(Score).join(ExtractionRun).where(ExtractionRun.document_id == document_id)
        else:
            statement = select(model).where(model.document_id == document_id)
        found = list(session.scalars(statement))
        session.expunge_all()
        return found


def test_the_queue_lists_what_awaits_review_with_counts(signed_in, receipt_example) -> None:
    low = signed_in.review.document(data=receipt_example, confidence={"/total": 0.2})
    done = signed_in.review.document(data={**receipt_example, "tip": None}, status="done")
    page = signed_in.get("/review/queue")
    assert page.status_code == 200
    assert low in page.text and done in page.text
    assert 'data-status="needs_review">1<' in page.text
    assert 'data-status="done">1<' in page.text
    by_confidence = signed_in.get("/review/queue?sort=confidence").text
    assert by_confidence.index(low) < by_confidence.index(done)
    oldest = signed_in.get("/review/queue").text
    assert oldest.index(low) < oldest.index(done)
    assert done not in signed_in.get("/review/queue?status=needs_review").text
    assert low not in signed_in.get("/review/queue?doc_type=check").text
    assert low not in signed_in.get("/review/queue?date_to=2000-01-01").text
    assert low in signed_in.get("/review/queue?model=h2ovl-800m&date_from=2000-01-01").text


def test_the_document_page_shows_flags_pages_and_raw_output(signed_in, receipt_example) -> None:
    document_id = signed_in.review.document(
        data=receipt_example,
        pages=2,
        confidence={"/merchant_phone": 0.31, "/total": 0.97},
        errors=[{"path": "/items/1/unit_price", "message": "'3.2' does not match"}],
        checks=[{"name": "receipt_total_sum", "ok": False, "message": "12.75 + 1.02 + 2.00 != 15.70"}],
    )
    html = signed_in.get(f"/review/documents/{document_id}").text
    assert "low confidence (0.31)" in html
    assert "&#39;3.2&#39; does not match" in html
    assert "check receipt_total_sum: 12.75 + 1.02 + 2.00 != 15.70" in html
    assert html.count('class="field flagged"') >= 4  # phone, subtotal, tax, tip, total
    assert "<details" in html and "Raw model output" in html
    assert 'data-page="2"' in html
    for key in ("<kbd>a</kbd> approve", "<kbd>r</kbd> reject", "<kbd>n</kbd> next", "<kbd>p</kbd> previous"):
        assert key in html
    image = signed_in.get(f"/review/documents/{document_id}/pages/2")
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    assert signed_in.get(f"/review/documents/{document_id}/pages/3").status_code == 404
    assert signed_in.get("/review/documents/doc_missing").status_code == 404


def test_approve_as_is_stores_a_perfect_score(signed_in, receipt_example) -> None:
    document_id = signed_in.review.document(data=receipt_example)
    form = read_form(signed_in.get(f"/review/documents/{document_id}").text)
    response = signed_in.post(f"/review/documents/{document_id}/approve", data=form, follow_redirects=False)
    assert response.status_code == 303
    [review] = rows(signed_in, Review, document_id)
    assert review.action == "approve" and review.corrected_data is None
    [score] = rows(signed_in, Score, document_id)
    assert (score.ground_truth_source, score.perfect_match, score.ted_accuracy, score.f1) == (
        "reviewed",
        True,
        1.0,
        1.0,
    )


def test_correct_and_approve(signed_in, receipt_example) -> None:
    extracted = {**receipt_example, "total": "15.70"}
    document_id = signed_in.review.document(data=extracted)
    form = read_form(signed_in.get(f"/review/documents/{document_id}").text)
    assert form["/total"] == "15.70" and form["/items/1/description"] == "Blueberry Scone"
    form["/total"] = "15.77"
    response = signed_in.post(f"/review/documents/{document_id}/approve", data=form, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == f"/review/documents/{document_id}?done=approved"
    page = signed_in.get(response.headers["location"]).text
    assert 'id="status">approved<' in page
    with signed_in.review.state.sessions() as session:
        assert session.get(Document, document_id).status == "approved"
    [review] = rows(signed_in, Review, document_id)
    assert review.corrected_data == receipt_example
    assert review.actor == "user:rita@example.com"
    [score] = rows(signed_in, Score, document_id)
    assert score.ground_truth_source == "reviewed"
    assert score.perfect_match is False
    assert 0.9 < score.ted_accuracy < 1.0
    assert 0.9 < score.f1 < 1.0
    [entry] = rows(signed_in, AuditEntry, document_id)
    assert (entry.actor, entry.action) == ("user:rita@example.com", "review.approve")
    assert entry.detail["corrected_fields"] == ["/total"]
    assert "15.7" not in str(entry.detail)
    # the audit trail is on the page
    audit = page[page.index('id="audit"') :]
    assert "review.approve" in audit and "user:rita@example.com" in audit and "/total" in audit
    # the form now shows the corrected data, read only
    assert 'value="15.77"' in page and '<fieldset class="fields" disabled>' in page


def test_rows_can_be_removed_and_added(signed_in, receipt_example) -> None:
    document_id = signed_in.review.document(data=receipt_example)
    form = read_form(signed_in.get(f"/review/documents/{document_id}").text)
    for key in [k for k in form if k.startswith("/items/0/")]:
        del form[key]
    form.update(
        {
            "/items/9/description": "Muffin",
            "/items/9/quantity": "1",
            "/items/9/unit_price": "",
            "/items/9/total_price": "2.50",
        }
    )
    assert signed_in.post(f"/review/documents/{document_id}/approve", data=form).status_code == 200
    [review] = rows(signed_in, Review, document_id)
    assert review.corrected_data["items"] == [
        receipt_example["items"][1],
        {"description": "Muffin", "quantity": 1, "unit_price": None, "total_price": "2.50"},
    ]


def test_invalid_corrections_are_not_approved(signed_in, receipt_example) -> None:
    document_id = signed_in.review.document(data=receipt_example)
    form = read_form(signed_in.get(f"/review/documents/{document_id}").text)
    form["/total"] = "15.7"
    form["/items/0/quantity"] = "two"
    response = signed_in.post(f"/review/documents/{document_id}/approve", data=form)
    assert response.status_code == 422
    assert "fix the highlighted fields" in response.text
    assert "a number is expected" in response.text
    assert "does not match" in response.text
    assert 'value="15.7"' in response.text  # what the reviewer typed is kept
    assert rows(signed_in, Review, document_id) == []
    assert rows(signed_in, Score, document_id) == []


def test_reject_needs_a_reason(signed_in, receipt_example) -> None:
    document_id = signed_in.review.document(data=receipt_example)
    token = signed_in.review.csrf(f"/review/documents/{document_id}")
    refused = signed_in.post(
        f"/review/documents/{document_id}/reject", data={"csrf_token": token, "reason": "  "}
    )
    assert refused.status_code == 422
    assert "a rejection needs a reason" in refused.text
    assert rows(signed_in, Review, document_id) == []
    response = signed_in.post(
        f"/review/documents/{document_id}/reject", data={"csrf_token": token, "reason": "not a receipt"}
    )
    assert response.status_code == 200
    assert 'id="status">rejected<' in response.text
    [review] = rows(signed_in, Review, document_id)
    assert (review.action, review.reason) == ("reject", "not a receipt")
    assert rows(signed_in, Score, document_id) == []
    [entry] = rows(signed_in, AuditEntry, document_id)
    assert entry.action == "review.reject"
    assert "not a receipt" not in str(entry.detail)


def test_a_reviewed_document_cannot_be_reviewed_again(signed_in, receipt_example) -> None:
    document_id = signed_in.review.document(data=receipt_example)
    form = read_form(signed_in.get(f"/review/documents/{document_id}").text)
    signed_in.post(f"/review/documents/{document_id}/approve", data=form)
    again = signed_in.post(f"/review/documents/{document_id}/approve", data=form)
    assert again.status_code == 409
    assert "Not reviewed: the document is approved" in again.text
    token = signed_in.review.csrf(f"/review/documents/{document_id}")
    rejected = signed_in.post(
        f"/review/documents/{document_id}/reject", data={"csrf_token": token, "reason": "x"}
    )
    assert rejected.status_code == 409
    assert len(rows(signed_in, Review, document_id)) == 1
    assert len(rows(signed_in, Score, document_id)) == 1


def test_next_and_previous_follow_the_queue(signed_in, receipt_example) -> None:
    first = signed_in.review.document(data=receipt_example)
    second = signed_in.review.document(data={**receipt_example, "tax": "1.00"})
    third = signed_in.review.document(data={**receipt_example, "tax": "1.01"})
    html = signed_in.get(f"/review/documents/{second}").text
    assert f'id="prev-link" href="/review/documents/{first}"' in html
    assert f'id="next-link" href="/review/documents/{third}"' in html
    form = read_form(html)
    done = signed_in.post(f"/review/documents/{second}/approve", data=form).text
    # approved and out of the queue, but still between its neighbours
    assert f'id="next-link" href="/review/documents/{third}"' in done


def test_an_approval_in_the_ui_is_scored_off_the_request_path(
    signed_in, receipt_example, monkeypatch
) -> None:
    import dataclasses

    from api import reviewing

    sent: list[str] = []
    monkeypatch.setattr(reviewing, "send_score_review", sent.append)
    signed_in.app.state.bayou = dataclasses.replace(
        signed_in.app.state.bayou, workers=True
    )  # as in production
    document_id = signed_in.review.document(data=receipt_example)
    form = read_form(signed_in.get(f"/review/documents/{document_id}").text)
    response = signed_in.post(f"/review/documents/{document_id}/approve", data=form, follow_redirects=False)
    assert response.status_code == 303
    assert sent == [document_id]  # the cpu queue's to compute (issue 15)
    assert rows(signed_in, Score, document_id) == []
