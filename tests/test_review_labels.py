"""Every form control on every review page has a name a screen reader can say: a <label> (for= or wrapping),
aria-label or aria-labelledby. The browser tests check the live pages too (after rows are added); this one
needs no browser, so it runs wherever the route tests run."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

CONTROLS = {"input", "select", "textarea"}


class LabelAudit(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.label_for: set[str] = set()
        self.label_depth = 0
        self.ids: set[str] = set()
        self.controls: list[tuple[dict[str, str | None], bool]] = []  # (attributes, inside a <label>)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(str(a["id"]))
        if tag == "label":
            self.label_depth += 1
            if a.get("for"):
                self.label_for.add(str(a["for"]))
        elif tag in CONTROLS and a.get("type") != "hidden":
            self.controls.append((a, self.label_depth > 0))

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self.label_depth -= 1

    def unlabelled(self) -> list[str]:
        missing = []
        for a, wrapped in self.controls:
            labelled_by = str(a.get("aria-labelledby") or "").split()
            named = (
                wrapped
                or (a.get("id") and a["id"] in self.label_for)
                or str(a.get("aria-label") or "").strip()
                or any(i in self.ids for i in labelled_by)
            )
            if not named:
                missing.append(str(a))
        return missing


def unlabelled(html: str) -> list[str]:
    audit = LabelAudit()
    audit.feed(html)
    assert audit.controls, "no form controls on the page: the check would prove nothing"
    return audit.unlabelled()


def test_the_check_sees_an_unlabelled_control() -> None:
    assert unlabelled('<label for="a">A</label><input id="a"><input name="b">') == [str({"name": "b"})]
    assert unlabelled('<label>A <input name="a"></label><input name="b" aria-label="B">') == []


@pytest.fixture
def admin_client(review_client, receipt_example):
    review_client.review.user("ada@example.com", role="admin")
    review_client.review.user("rita@example.com")
    review_client.review.document(data=receipt_example, confidence={"/total": 0.2}, pages=2)
    review_client.review.document(data={"family_name": "RIVERA"}, doc_type="drivers_license")
    review_client.review.document(data=None, doc_type="check")
    return review_client


def test_every_page_labels_its_controls(admin_client) -> None:
    assert unlabelled(admin_client.get("/review/login").text) == []
    assert admin_client.review.sign_in("ada@example.com").status_code == 303
    pages = ["/review/queue", "/review/dashboard", "/review/admin/users"]
    queue = admin_client.get("/review/queue?status=all").text
    pages += sorted({part.split('"')[0] for part in queue.split('data-href="')[1:]})
    assert len(pages) == 6  # three documents, one of each type
    for path in pages:
        page = admin_client.get(path)
        assert page.status_code == 200, path
        assert unlabelled(page.text) == [], path
