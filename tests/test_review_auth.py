"""Review UI sign-in: sessions, CSRF, throttling, logout, roles."""

from __future__ import annotations

import datetime as dt
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.review import throttle
from storage.models import ReviewSession
from tests.conftest import REVIEW_PASSWORD

PARALLEL = 12


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
    assert "Too many failed sign-ins: try again after" in locked.text
    assert 14 * 60 < int(locked.headers["retry-after"]) <= 15 * 60 + 1
    with review_client.review.state.sessions() as session:
        until = throttle.locked_until(session, throttle.keys_for("rita@example.com", "testclient"))
        assert until is not None and until > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=14)


@pytest.mark.slow
def test_parallel_wrong_passwords_are_all_counted(review_client, monkeypatch) -> None:
    """The race the old read-modify-write lost: wrong passwords at once each read the count before any
    wrote it, so the lock never came and the right password signed in afterwards."""
    review_client.review.user()
    # room for every attempt to hash at once (the real limit, the number of cores, would refuse most)
    monkeypatch.setattr("api.review.auth._hashing", threading.BoundedSemaphore(PARALLEL))
    token = review_client.review.csrf()

    def wrong(n: int) -> int:
        form = {"email": "rita@example.com", "password": f"wrong {n}", "csrf_token": token, "next": ""}
        return review_client.post("/review/login", data=form, follow_redirects=False).status_code

    with ThreadPoolExecutor(PARALLEL) as pool:
        statuses = list(pool.map(wrong, range(PARALLEL)))
    # counted one by one: only the first four failures can have found the account unlocked afterwards
    assert statuses.count(401) <= 4 and set(statuses) <= {401, 429}, statuses
    right = review_client.review.sign_in()
    assert right.status_code == 429
    assert review_client.get("/review/queue", follow_redirects=False).status_code == 303


@pytest.mark.slow
def test_an_unknown_email_is_answered_like_a_known_one(review_client) -> None:
    review_client.review.user()
    answers = {}
    for email in ("rita@example.com", "nobody@example.com"):
        answers[email] = [review_client.review.sign_in(email, f"wrong {n}") for n in range(6)]
    known, unknown = answers["rita@example.com"], answers["nobody@example.com"]
    assert [a.status_code for a in known] == [a.status_code for a in unknown] == [401] * 4 + [429] * 2
    # what may differ: the typed email, the form token, and the lock's end time (HH:MM), which is a minute
    # later for the second account when a minute boundary passes between the two runs of six sign-ins
    strip = lambda text: re.sub(r'value="[^"]*"|\d\d:\d\d UTC', "", text)  # noqa: E731
    assert [strip(a.text) for a in known] == [strip(a.text) for a in unknown]


def test_a_stranger_locks_only_their_own_address_out(review_client) -> None:
    review_client.review.user()
    stranger = TestClient(review_client.app, client=("203.0.113.9", 40000))
    for n in range(5):
        sign_in_from(stranger, "rita@example.com", f"wrong {n}")
    assert sign_in_from(stranger, "rita@example.com", REVIEW_PASSWORD).status_code == 429
    # rita, from her own address, is not kept out
    assert review_client.review.sign_in().status_code == 303


def test_one_address_trying_many_accounts_is_stopped(review_client) -> None:
    review_client.review.user()
    sprayer = TestClient(review_client.app, client=("203.0.113.10", 40000))
    limit = throttle.LIMITS["address"]
    with review_client.review.state.sessions() as session:
        # all but the last failure counted directly (each through the form would cost a password hash)
        for n in range(limit - 2):
            assert (
                throttle.record_failure(session, throttle.keys_for(f"user{n}@example.com", "203.0.113.10"))
                is None
            )
    statuses = [sign_in_from(sprayer, f"other{n}@example.com", "guess").status_code for n in range(2)]
    assert statuses == [401, 429]
    # every account is closed to that address now, a real one with its right password too
    assert sign_in_from(sprayer, "rita@example.com", REVIEW_PASSWORD).status_code == 429
    assert review_client.review.sign_in().status_code == 303


def test_many_addresses_guessing_at_one_account_lock_it_for_all(review_client) -> None:
    with review_client.review.state.sessions() as session:
        limit = throttle.LIMITS["account"]
        for n in range(limit):
            # each address stays under its own pair limit
            throttle.record_failure(session, throttle.keys_for("rita@example.com", f"198.51.100.{n // 4}"))
        elsewhere = throttle.keys_for("rita@example.com", "192.0.2.1")
        assert throttle.locked_until(session, elsewhere) is not None
        assert throttle.locked_until(session, throttle.keys_for("ada@example.com", "192.0.2.1")) is None


def test_sign_in_is_refused_at_once_while_every_hashing_slot_is_busy(review_client) -> None:
    from api.review import auth

    review_client.review.user()
    token = review_client.review.csrf()
    taken = 0
    while auth._hashing.acquire(blocking=False):
        taken += 1
    try:
        assert taken == auth.HASHING_SLOTS
        for email in ("rita@example.com", "nobody@example.com"):
            form = {"email": email, "password": REVIEW_PASSWORD, "csrf_token": token, "next": ""}
            answer = review_client.post("/review/login", data=form, follow_redirects=False)
            assert answer.status_code == 429
            assert answer.headers["retry-after"] == "1"
            assert "Too many sign-ins at this moment" in answer.text
    finally:
        for _ in range(taken):
            auth._hashing.release()
    # refused, not counted as failures: the right password signs in once a slot is free
    assert review_client.review.sign_in().status_code == 303


def test_sign_out_ends_the_session_on_the_server(review_client) -> None:
    review_client.review.user(email="ada@example.com", role="admin")
    assert review_client.review.sign_in("ada@example.com").status_code == 303
    saved = review_client.cookies.get("bayou_review")
    assert review_client.get("/review/admin/users").status_code == 200
    token = review_client.review.csrf("/review/queue")
    assert review_client.post("/review/logout", data={"csrf_token": token}).status_code == 200
    # the cookie kept from before signing out opens nothing now
    replay = TestClient(review_client.app, cookies={"bayou_review": saved})
    answer = replay.get("/review/admin/users", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/review/login")
    with review_client.review.state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(ReviewSession)) == 0


def test_signing_out_ends_only_that_session(review_client) -> None:
    review_client.review.user()
    assert review_client.review.sign_in().status_code == 303
    other = TestClient(review_client.app)
    assert sign_in_from(other, "rita@example.com", REVIEW_PASSWORD).status_code == 303
    token = review_client.review.csrf("/review/queue")
    review_client.post("/review/logout", data={"csrf_token": token})
    assert other.get("/review/queue", follow_redirects=False).status_code == 200


def sign_in_from(client: TestClient, email: str, password: str):
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/review/login").text).group(1)
    form = {"email": email, "password": password, "csrf_token": token, "next": ""}
    return client.post("/review/login", data=form, follow_redirects=False)


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
