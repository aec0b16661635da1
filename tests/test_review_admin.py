"""/review/admin/users: admins list, create, re-role, disable and enable accounts (CSRF, audit-logged);
reviewers get 403; a disabled account cannot sign in and its open sessions stop working."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.review.auth import AccountDisabled, authenticate
from storage.models import AuditEntry, User
from tests.conftest import REVIEW_PASSWORD

USERS = "/review/admin/users"
NEW_PASSWORD = "a fresh long password"


@pytest.fixture
def admin(review_client):
    """review_client signed in as the admin ada@example.com; rita@example.com is a reviewer."""
    review_client.review.user("ada@example.com", role="admin")
    review_client.review.user("rita@example.com", role="reviewer")
    assert review_client.review.sign_in("ada@example.com").status_code == 303
    return review_client


def browser_of(client, email: str, password: str = REVIEW_PASSWORD) -> TestClient:
    """A second browser on the same app (cookies of its own), signed in as `email`."""
    other = TestClient(client.app)
    html = other.get("/review/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    answer = other.post(
        "/review/login",
        data={"email": email, "password": password, "csrf_token": token, "next": ""},
        follow_redirects=False,
    )
    other.sign_in_status = answer.status_code
    other.sign_in_text = answer.text
    return other


def user_row(client, email: str) -> User:
    with client.review.state.sessions() as session:
        user = session.scalar(select(User).where(User.email == email))
        session.expunge_all()
        return user


def audit(client) -> list[tuple[str, str, dict]]:
    with client.review.state.sessions() as session:
        entries = session.scalars(select(AuditEntry).where(AuditEntry.action.startswith("user.")))
        return [(e.actor, e.action, e.detail) for e in entries]


def post(client, path: str, data: dict[str, str] | None = None, *, token: bool = True):
    form = dict(data or {})
    if token:
        form["csrf_token"] = client.review.csrf(USERS)
    return client.post(path, data=form, follow_redirects=False)


def test_a_reviewer_gets_403_and_no_link(review_client) -> None:
    review_client.review.user()
    target = review_client.review.user("ada@example.com", role="admin")
    review_client.review.sign_in()
    queue = review_client.get("/review/queue").text
    assert 'href="/review/admin/users"' not in queue
    for path in (USERS, "/review/admin"):
        answer = review_client.get(path, follow_redirects=False)
        assert answer.status_code == 403
        assert "this page is for admins" in answer.text
    token = review_client.review.csrf("/review/queue")
    for path, data in [
        (USERS, {"email": "eve@example.com", "role": "admin", "password": NEW_PASSWORD}),
        (f"{USERS}/{target}/disable", {}),
        (f"{USERS}/{target}/role", {"role": "reviewer"}),
    ]:
        answer = review_client.post(path, data={**data, "csrf_token": token}, follow_redirects=False)
        assert answer.status_code == 403, path
    assert user_row(review_client, "eve@example.com") is None
    assert user_row(review_client, "ada@example.com").disabled is False
    assert audit(review_client) == []


def test_signed_out_visitors_are_sent_to_sign_in(review_client) -> None:
    answer = review_client.get(USERS, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/review/login?next=%2Freview%2Fadmin%2Fusers"


def test_the_list_shows_accounts_but_never_hashes(admin) -> None:
    page = admin.get(USERS)
    assert page.status_code == 200
    assert 'href="/review/admin/users"' in page.text  # the nav link
    rows = page.text[page.text.index('id="users"') :]
    assert "ada@example.com" in rows and "rita@example.com" in rows
    assert "$argon2" not in page.text and "password_hash" not in page.text
    assert page.text.count('class="user-row') == 2


def test_create_an_account(admin) -> None:
    answer = post(admin, USERS, {"email": " Sam@Example.com", "role": "reviewer", "password": NEW_PASSWORD})
    assert answer.status_code == 303
    assert answer.headers["location"] == f"{USERS}?done=created"
    assert "Account created." in admin.get(answer.headers["location"]).text
    sam = user_row(admin, "sam@example.com")
    assert sam.role == "reviewer" and sam.disabled is False
    assert sam.password_hash.startswith("$argon2id$") and NEW_PASSWORD not in sam.password_hash
    assert audit(admin) == [
        ("user:ada@example.com", "user.create", {"user": "sam@example.com", "role": "reviewer", "id": sam.id})
    ]
    assert NEW_PASSWORD not in str(audit(admin))
    assert browser_of(admin, "sam@example.com", NEW_PASSWORD).sign_in_status == 303
    # the change is on the page's own audit table
    table = admin.get(USERS).text
    table = table[table.index('id="user-audit"') :]
    assert "user.create" in table and "sam@example.com" in table


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"email": "rita@example.com", "role": "admin", "password": NEW_PASSWORD}, "exists already"),
        ({"email": "RITA@example.com", "role": "admin", "password": NEW_PASSWORD}, "exists already"),
        ({"email": "sam@example.com", "role": "reviewer", "password": "short"}, "at least 10 characters"),
        ({"email": "sam@example.com", "role": "boss", "password": NEW_PASSWORD}, "role must be one of"),
        ({"email": "sam", "role": "reviewer", "password": NEW_PASSWORD}, "email must be an address"),
    ],
)
def test_bad_accounts_are_refused_and_the_form_kept(admin, form: dict[str, str], message: str) -> None:
    answer = post(admin, USERS, form)
    assert answer.status_code == 422
    assert message in answer.text
    assert f'value="{form["email"]}"' in answer.text  # what was typed is kept, the password is not
    assert form["password"] not in answer.text
    assert user_row(admin, "sam@example.com") is None
    assert user_row(admin, "rita@example.com").role == "reviewer"
    assert audit(admin) == []


def test_posts_without_the_csrf_token_are_refused(admin) -> None:
    rita = user_row(admin, "rita@example.com")
    new = {"email": "sam@example.com", "role": "admin", "password": NEW_PASSWORD}
    for path, data in [(USERS, new), (f"{USERS}/{rita.id}/disable", {}), (f"{USERS}/{rita.id}/role", {})]:
        for extra in ({}, {"csrf_token": "forged"}):
            answer = post(admin, path, {**data, **extra}, token=False)
            assert answer.status_code == 403, (path, extra)
            assert "did not come from this site" in answer.text
    assert user_row(admin, "sam@example.com") is None
    assert user_row(admin, "rita@example.com").disabled is False
    assert audit(admin) == []


def test_change_a_role_takes_effect_at_once(admin) -> None:
    rita = browser_of(admin, "rita@example.com")
    assert rita.get(USERS).status_code == 403
    user_id = user_row(admin, "rita@example.com").id
    answer = post(admin, f"{USERS}/{user_id}/role", {"role": "admin"})
    assert answer.status_code == 303
    assert user_row(admin, "rita@example.com").role == "admin"
    # her open session now reaches the admin page: the role is read on every request
    assert rita.get(USERS).status_code == 200
    assert audit(admin)[-1] == (
        "user:ada@example.com",
        "user.role",
        {"user": "rita@example.com", "role": "admin", "id": user_id},
    )
    assert post(admin, f"{USERS}/{user_id}/role", {"role": "owner"}).status_code == 422
    assert user_row(admin, "rita@example.com").role == "admin"


def test_disable_ends_sessions_and_sign_in_then_enable(admin) -> None:
    rita = browser_of(admin, "rita@example.com")
    assert rita.get("/review/queue").status_code == 200
    user_id = user_row(admin, "rita@example.com").id

    answer = post(admin, f"{USERS}/{user_id}/disable")
    assert answer.status_code == 303
    assert "its sessions have ended" in admin.get(answer.headers["location"]).text
    assert user_row(admin, "rita@example.com").disabled is True
    # the session she had is no session any more
    assert rita.get("/review/queue", follow_redirects=False).status_code == 303
    # and the right password does not let her back in
    again = browser_of(admin, "rita@example.com")
    assert again.sign_in_status == 403
    assert "This account is disabled" in again.sign_in_text
    assert again.get("/review/queue", follow_redirects=False).status_code == 303
    # a wrong password says no more than for anyone else
    wrong = browser_of(admin, "rita@example.com", "not the password")
    assert wrong.sign_in_status == 401 and "disabled" not in wrong.sign_in_text

    assert post(admin, f"{USERS}/{user_id}/enable").status_code == 303
    assert user_row(admin, "rita@example.com").disabled is False
    assert browser_of(admin, "rita@example.com").sign_in_status == 303
    assert [action for _, action, _ in audit(admin)] == ["user.disable", "user.enable"]


def test_an_admin_cannot_demote_or_disable_themselves(admin) -> None:
    own = user_row(admin, "ada@example.com").id
    for path, data in [(f"{USERS}/{own}/disable", {}), (f"{USERS}/{own}/role", {"role": "reviewer"})]:
        answer = post(admin, path, data)
        assert answer.status_code == 409
        assert "ask another admin" in answer.text
    ada = user_row(admin, "ada@example.com")
    assert (ada.role, ada.disabled) == ("admin", False)
    assert admin.get(USERS).status_code == 200
    assert audit(admin) == []


def test_an_unknown_account_is_404(admin) -> None:
    assert post(admin, f"{USERS}/999999/disable").status_code == 404
    assert post(admin, f"{USERS}/999999/role", {"role": "admin"}).status_code == 404


def test_authenticate_a_disabled_account(admin) -> None:
    with admin.review.state.sessions() as session:
        rita = session.scalar(select(User).where(User.email == "rita@example.com"))
        rita.disabled = True
        session.commit()
        with pytest.raises(AccountDisabled):
            authenticate(session, "rita@example.com", REVIEW_PASSWORD)
        assert authenticate(session, "rita@example.com", "not the password") is None
