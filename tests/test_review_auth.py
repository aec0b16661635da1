"""Review UI sign-in: sessions, CSRF, throttling, logout, roles."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from storage.models import User
from tests.conftest import REVIEW_PASSWORD


def test_pages_need_a_session(review_client) -> None:
    response = review_client.get("/review/queue?status=all", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/review/login?next=%2Freview%2Fqueue%3Fstatus%3Dall"


def test_sign_in_then_out(review_client) -> None:
    review_client.review.user()
    response = review_client.review.sign_in()
    assert response.status_code == 303
    assert response.headers["location"] == "/review/queue"
    cookie = response.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
    page = review_client.get("/review/queue")
    assert page.status_code == 200
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    assert "rita@example.com" in page.text
    token = review_client.review.csrf("/review/queue")
    out = review_client.post("/review/logout", data={"csrf_token": token}, follow_redirects=False)
    assert out.status_code == 303
    assert review_client.get("/review/queue", follow_redirects=False).status_code == 303


def test_sign_in_goes_back_to_the_page_asked_for_but_never_off_site(review_client) -> None:
    review_client.review.user()
    token = review_client.review.csrf()
    for target, expected in [
        ("/review/dashboard", "/review/dashboard"),
        ("https://evil.example/", "/review/queue"),
        ("//evil.example", "/review/queue"),
    ]:
        review_client.cookies.clear()
        token = review_client.review.csrf()
        response = review_client.post(
            "/review/login",
            data={
                "email": "RITA@example.com ",
                "password": REVIEW_PASSWORD,
                "csrf_token": token,
                "next": target,
            },
            follow_redirects=False,
        )
        assert response.headers["location"] == expected


def test_a_wrong_password_is_refused(review_client) -> None:
    review_client.review.user()
    response = review_client.review.sign_in(password="not the password")
    assert response.status_code == 401
    assert "Wrong email or password" in response.text
    assert review_client.get("/review/queue", follow_redirects=False).status_code == 303
    assert review_client.review.sign_in(email="nobody@example.com").status_code == 401


def test_wrong_passwords_lock_the_account(review_client) -> None:
    review_client.review.user()
    statuses = [review_client.review.sign_in(password=f"wrong {n}").status_code for n in range(5)]
    assert statuses == [401, 401, 401, 401, 429]
    # locked: even the right password is refused now
    locked = review_client.review.sign_in()
    assert locked.status_code == 429
    assert "locked until" in locked.text
    with review_client.review.state.sessions() as session:
        user = session.scalar(select(User).where(User.email == "rita@example.com"))
        assert user.locked_until is not None
        assert user.locked_until > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=14)
        # the lock runs out
        user.locked_until = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        session.commit()
    assert review_client.review.sign_in().status_code == 303


def test_a_success_resets_the_failure_count(review_client) -> None:
    review_client.review.user()
    for n in range(4):
        review_client.review.sign_in(password=f"wrong {n}")
    assert review_client.review.sign_in().status_code == 303
    review_client.cookies.clear()
    assert review_client.review.sign_in(password="wrong again").status_code == 401


def test_posts_without_a_valid_csrf_token_are_refused(review_client, receipt_example) -> None:
    review_client.review.user()
    bare = {"email": "rita@example.com", "password": REVIEW_PASSWORD}
    assert review_client.post("/review/login", data=bare, follow_redirects=False).status_code == 403
    review_client.review.csrf()  # has a session cookie now, still no token in the form
    assert review_client.post("/review/login", data=bare, follow_redirects=False).status_code == 403
    forged = review_client.post(
        "/review/login", data={**bare, "csrf_token": "forged"}, follow_redirects=False
    )
    assert forged.status_code == 403
    assert review_client.review.sign_in().status_code == 303
    document_id = review_client.review.document(data=receipt_example)
    refused = review_client.post(f"/review/documents/{document_id}/approve", data={"/total": "15.77"})
    assert refused.status_code == 403
    assert review_client.post("/review/logout", data={}).status_code == 403
    assert "needs review" in review_client.get(f"/review/documents/{document_id}").text


def test_a_tampered_cookie_is_no_session(review_client) -> None:
    review_client.review.user()
    review_client.review.sign_in()
    value = review_client.cookies.get("bayou_review")
    review_client.cookies.clear()
    review_client.cookies.set(
        "bayou_review", value[:-2] + ("AA" if not value.endswith("AA") else "BB"), path="/review"
    )
    assert review_client.get("/review/queue", follow_redirects=False).status_code == 303


def test_export_is_for_admins(review_client) -> None:
    review_client.review.user()
    review_client.review.user(email="ada@example.com", role="admin")
    review_client.review.sign_in()
    assert review_client.get("/review/export?format=jsonl").status_code == 403
    review_client.cookies.clear()
    review_client.review.sign_in(email="ada@example.com")
    response = review_client.get("/review/export?format=csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
