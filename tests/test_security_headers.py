"""Headers: error pages of the review UI carry the same security headers as its other pages, and
nothing personal (documents, page images of licences and checks, exports) may be kept in a disk cache."""

from __future__ import annotations

import pytest

from tests.conftest import REVIEW_PASSWORD


@pytest.fixture
def review_db_url(api_data_dir) -> str:
    # headers do not depend on the database: SQLite alone
    return f"sqlite:///{api_data_dir / 'bayou.db'}"


@pytest.fixture
def signed_in(review_client, receipt_example):
    review_client.review.user("ada@example.com", role="admin")
    review_client.review.user("rita@example.com")
    assert review_client.review.sign_in("ada@example.com", REVIEW_PASSWORD).status_code == 303
    review_client.document_id = review_client.review.document(data=receipt_example, pages=1)
    return review_client


def test_error_pages_carry_the_security_headers(signed_in) -> None:
    missing = signed_in.get("/review/documents/doc_nope")
    assert missing.status_code == 404
    signed_in.cookies.clear()
    assert signed_in.review.sign_in("rita@example.com", REVIEW_PASSWORD).status_code == 303
    forbidden = signed_in.get("/review/admin/users")
    assert forbidden.status_code == 403
    # the framework's own refusals under /review too: an unknown path, a query that fails validation
    unknown = signed_in.get("/review/no-such-page")
    assert unknown.status_code == 404
    bad_query = signed_in.get("/review/documents/doc_nope/pages/abc")
    assert bad_query.status_code == 422
    for page in (missing, forbidden, unknown, bad_query):
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["cache-control"] == "no-store"


def test_review_page_images_and_exports_are_never_stored(signed_in) -> None:
    image = signed_in.get(f"/review/documents/{signed_in.document_id}/pages/1")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.headers["cache-control"] == "no-store"
    for format in ("csv", "jsonl"):
        export = signed_in.get(f"/review/export?format={format}")
        assert export.status_code == 200 and export.headers["cache-control"] == "no-store"


def test_api_page_images_documents_and_exports_are_never_stored(signed_in) -> None:
    auth = {"Authorization": f"Bearer {signed_in.key}"}
    document = f"/v1/documents/{signed_in.document_id}"
    for path in (f"{document}/pages/1", document, "/v1/documents?format=csv", "/v1/documents?format=jsonl"):
        answer = signed_in.get(path, headers=auth)
        assert answer.status_code == 200, path
        assert answer.headers["cache-control"] == "no-store", path
        assert answer.headers["x-content-type-options"] == "nosniff", path
    # refusals too (their bodies may name what was asked for)
    assert signed_in.get(f"{document}/pages/9", headers=auth).headers["cache-control"] == "no-store"
    assert signed_in.get(document).headers["cache-control"] == "no-store"
