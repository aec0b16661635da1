"""Reviewer accounts and browser sessions for /review.

* passwords: argon2id hashes (argon2-cffi); a hash made with older parameters is upgraded on sign-in;
* throttling: `MAX_FAILED_LOGINS` wrong passwords in a row lock the account for `LOCK_DURATION`;
* sessions: a cookie signed with itsdangerous holding the user id, a per-session CSRF token and a
  fingerprint of the password hash (a new password ends every older session); HttpOnly, SameSite=Lax,
  Secure whenever the request came over HTTPS; expires after `SESSION_MAX_AGE`;
* CSRF: every POST carries the session's token in a hidden field (`csrf_token`), compared in constant
  time. Anonymous visitors get a session cookie too, so the sign-in form is protected the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.orm import Session

from bayou.secrets_store import installation_secret
from bayou.settings import Settings
from storage.columns import utcnow
from storage.models import User, UserRole

MAX_FAILED_LOGINS = 5
LOCK_DURATION = timedelta(minutes=15)
SESSION_MAX_AGE = timedelta(hours=8)
COOKIE_NAME = "bayou_review"
CSRF_FIELD = "csrf_token"
MIN_PASSWORD_LENGTH = 10
SECRET_FILE = "review-secret"

_hasher = PasswordHasher()
# verified against when the email is unknown, so that case takes as long as a wrong password
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class UserExists(Exception):
    pass


class AccountDisabled(Exception):
    """The password was right but an admin has disabled the account."""


class LoginLocked(Exception):
    def __init__(self, until: datetime) -> None:
        super().__init__(f"locked until {until:%H:%M} UTC")
        self.until = until


# --- users ------------------------------------------------------------------------------------------


def normalize_email(email: str) -> str:
    return email.strip().lower()


def check_new_user(email: str, role: str, password: str) -> None:
    """Raises ValueError naming what is wrong with a new account's details."""
    if "@" not in email or len(email) > 320 or any(c.isspace() for c in email):
        raise ValueError("email must be an address such as name@example.com")
    if role not in {r.value for r in UserRole}:
        raise ValueError(f"role must be one of {', '.join(r.value for r in UserRole)}")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")


def create_user(session: Session, *, email: str, role: str, password: str, commit: bool = True) -> User:
    """`commit=False` only flushes (the id is known), for a caller that commits more with it."""
    email = normalize_email(email)
    check_new_user(email, role, password)
    if session.scalar(select(User).where(User.email == email)) is not None:
        raise UserExists(f"a user {email} exists already")
    user = User(email=email, role=UserRole(role).value, password_hash=_hasher.hash(password), disabled=False)
    session.add(user)
    if commit:
        session.commit()
    else:
        session.flush()
    return user


def authenticate(session: Session, email: str, password: str, *, now: datetime | None = None) -> User | None:
    """The user whose password this is, or None. Raises LoginLocked while the account is locked (the
    password is then not even looked at, so guessing on cannot unlock it), and AccountDisabled for the
    right password of a disabled account (only someone who knows the password learns it is disabled)."""
    now = now or utcnow()
    user = session.scalar(select(User).where(User.email == normalize_email(email)))
    if user is None:
        _verify(_DUMMY_HASH, password)
        return None
    if user.locked_until is not None and user.locked_until > now:
        raise LoginLocked(user.locked_until)
    if not _verify(user.password_hash, password):
        user.failed_logins += 1
        if user.failed_logins >= MAX_FAILED_LOGINS:
            user.locked_until = now + LOCK_DURATION
            user.failed_logins = 0
        session.commit()
        if user.locked_until is not None and user.locked_until > now:
            raise LoginLocked(user.locked_until)
        return None
    user.failed_logins = 0
    user.locked_until = None
    if user.disabled:
        session.commit()
        raise AccountDisabled()
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    session.commit()
    return user


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


# --- sessions ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BrowserSession:
    csrf: str
    user_id: int | None = None
    fingerprint: str | None = None


def session_secret(settings: Settings) -> str:
    """BAYOU_REVIEW_SECRET, else a random secret kept in the data dir, so every process sharing the data
    dir accepts the same cookies."""
    configured = settings.review_secret.get_secret_value()
    return configured or installation_secret(settings.data_dir, SECRET_FILE)


class SessionCodec:
    def __init__(self, secret: str) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="bayou-review-session")

    def dumps(self, value: BrowserSession) -> str:
        return self._serializer.dumps({"c": value.csrf, "u": value.user_id, "f": value.fingerprint})

    def loads(self, token: str | None) -> BrowserSession | None:
        if not token:
            return None
        try:
            payload: Any = self._serializer.loads(token, max_age=int(SESSION_MAX_AGE.total_seconds()))
        except BadSignature:
            return None
        if not isinstance(payload, dict) or not isinstance(payload.get("c"), str):
            return None
        user_id = payload.get("u")
        return BrowserSession(
            payload["c"], user_id if isinstance(user_id, int) else None, payload.get("f") or None
        )


def new_anonymous() -> BrowserSession:
    return BrowserSession(csrf=secrets.token_urlsafe(32))


def signed_in(user: User) -> BrowserSession:
    """A fresh session (new CSRF token: nothing from before sign-in carries over)."""
    return BrowserSession(csrf=secrets.token_urlsafe(32), user_id=user.id, fingerprint=fingerprint(user))


def fingerprint(user: User) -> str:
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:16]


def session_user(session: Session, browser: BrowserSession | None) -> User | None:
    if browser is None or browser.user_id is None:
        return None
    user = session.get(User, browser.user_id)
    # looked up on every request: disabling an account ends its sessions at once
    if user is None or user.disabled or not hmac.compare_digest(fingerprint(user), browser.fingerprint or ""):
        return None
    return user


def csrf_ok(browser: BrowserSession | None, presented: object) -> bool:
    if browser is None or not isinstance(presented, str) or not presented:
        return False
    return hmac.compare_digest(browser.csrf.encode(), presented.encode())


def set_session_cookie(
    response: Response, request: Request, codec: SessionCodec, value: BrowserSession
) -> None:
    response.set_cookie(
        COOKIE_NAME,
        codec.dumps(value),
        max_age=int(SESSION_MAX_AGE.total_seconds()),
        path="/review",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
