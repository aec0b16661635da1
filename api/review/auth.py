"""Reviewer accounts and browser sessions for /review.

* passwords: argon2id hashes (argon2-cffi); a hash made with older parameters is upgraded on sign-in;
* throttling: failed sign-ins counted atomically per account, per client address and per both
  (`api.review.throttle`); a locked key is refused before any password is hashed;
* hashing: at most `HASHING_SLOTS` (the number of cores) argon2id hashes at a time in this process (each
  takes 64 MiB and a core for ~0.2 s); a sign-in past that is refused at once (`HashingBusy`, 429);
* sessions: a cookie signed with itsdangerous holding the user id, a random session id (its hash is a row of
  `review_sessions`: signing out deletes it, so the cookie opens nothing afterwards, wherever it was saved),
  a per-session CSRF token and a fingerprint of the password hash (a new password ends every older
  session); HttpOnly, SameSite=Lax, Secure whenever the request came over HTTPS (behind a TLS proxy: see
  `BAYOU_FORWARDED_ALLOW_IPS`); expires after `SESSION_MAX_AGE`;
* CSRF: every POST carries the session's token in a hidden field (`csrf_token`), compared in constant
  time. Anonymous visitors get a session cookie too, so the sign-in form is protected the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from api.review import throttle
from bayou.secrets_store import installation_secret
from bayou.settings import Settings
from storage.columns import utcnow
from storage.models import ReviewSession, User, UserRole

SESSION_MAX_AGE = timedelta(hours=8)
COOKIE_NAME = "bayou_review"
CSRF_FIELD = "csrf_token"
MIN_PASSWORD_LENGTH = 10
SECRET_FILE = "review-secret"

_hasher = PasswordHasher()
# verified against when the email is unknown, so that case takes as long as a wrong password
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
# a sign-in past these is refused, not queued: waiting requests would hold their memory and threads anyway
HASHING_SLOTS = os.cpu_count() or 1
_hashing = threading.BoundedSemaphore(HASHING_SLOTS)
# what a refused sign-in is told to wait: about one hash's time, rounded up to Retry-After's whole seconds
HASHING_RETRY_AFTER_S = 1


class UserExists(Exception):
    pass


class AccountDisabled(Exception):
    """The password was right but an admin has disabled the account."""


class HashingBusy(Exception):
    """Every password-hashing slot is taken: the sign-in is refused before it costs anything."""


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


def authenticate(
    session: Session, email: str, password: str, *, address: str = "local", now: datetime | None = None
) -> User | None:
    """The user whose password this is, or None. `address`: the client's, for the per-address counts.

    Raises LoginLocked while a count of this attempt is locked (the password is then not even looked at,
    so guessing on cannot unlock it) and also when the right password comes while a failure counted in
    the meantime has locked it; HashingBusy when no hashing slot is free; AccountDisabled for the right
    password of a disabled account (only someone who knows the password learns it is disabled). An
    unknown email is hashed and counted exactly like a known one."""
    now = now or utcnow()
    email = normalize_email(email)
    keys = throttle.keys_for(email, address)
    until = throttle.locked_until(session, keys, now)
    if until is not None:
        raise LoginLocked(until)
    user = session.scalar(select(User).where(User.email == email))
    with hashing_slot():
        right = _verify(user.password_hash if user else _DUMMY_HASH, password) and user is not None
        if right and user is not None and _hasher.check_needs_rehash(user.password_hash):
            user.password_hash = _hasher.hash(password)
    if not right or user is None:
        session.rollback()
        until = throttle.record_failure(session, keys, now)
        if until is not None:
            raise LoginLocked(until)
        return None
    # decided after the password: a failure counted while it was being hashed may have locked the account
    until = throttle.locked_until(session, keys, now)
    if until is not None:
        session.rollback()
        raise LoginLocked(until)
    throttle.record_success(session, keys)
    if user.disabled:
        raise AccountDisabled()
    return user


@contextmanager
def hashing_slot() -> Iterator[None]:
    if not _hashing.acquire(blocking=False):
        raise HashingBusy()
    try:
        yield
    finally:
        _hashing.release()


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
    # the server-side session's id (signed in only); its hash is the review_sessions row
    sid: str | None = None


def session_secret(settings: Settings) -> str:
    """BAYOU_REVIEW_SECRET, else a random secret kept in the data dir, so every process sharing the data
    dir accepts the same cookies."""
    configured = settings.review_secret.get_secret_value()
    return configured or installation_secret(settings.data_dir, SECRET_FILE)


class SessionCodec:
    def __init__(self, secret: str) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="bayou-review-session")

    def dumps(self, value: BrowserSession) -> str:
        return self._serializer.dumps(
            {"c": value.csrf, "u": value.user_id, "f": value.fingerprint, "s": value.sid}
        )

    def loads(self, token: str | None) -> BrowserSession | None:
        if not token:
            return None
        try:
            payload: Any = self._serializer.loads(token, max_age=int(SESSION_MAX_AGE.total_seconds()))
        except BadSignature:
            return None
        if not isinstance(payload, dict) or not isinstance(payload.get("c"), str):
            return None
        user_id, sid = payload.get("u"), payload.get("s")
        return BrowserSession(
            payload["c"],
            user_id if isinstance(user_id, int) else None,
            payload.get("f") or None,
            sid if isinstance(sid, str) else None,
        )


def new_anonymous() -> BrowserSession:
    return BrowserSession(csrf=secrets.token_urlsafe(32))


def signed_in(session: Session, user: User, *, now: datetime | None = None) -> BrowserSession:
    """A fresh session, stored (new CSRF token: nothing from before sign-in carries over)."""
    now = now or utcnow()
    # expired sessions go here, where sessions are made, so the table holds live ones and the recently ended
    session.execute(delete(ReviewSession).where(ReviewSession.expires_at <= now))
    sid = secrets.token_urlsafe(32)
    session.add(
        ReviewSession(id=_session_key(sid), user_id=user.id, created_at=now, expires_at=now + SESSION_MAX_AGE)
    )
    session.commit()
    return BrowserSession(
        csrf=secrets.token_urlsafe(32), user_id=user.id, fingerprint=fingerprint(user), sid=sid
    )


def end_session(session: Session, browser: BrowserSession) -> None:
    """Signing out: the session's row goes, so its cookie (wherever a copy was kept) opens nothing."""
    if browser.sid is not None:
        session.execute(delete(ReviewSession).where(ReviewSession.id == _session_key(browser.sid)))
        session.commit()


def _session_key(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def fingerprint(user: User) -> str:
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:16]


def session_user(session: Session, browser: BrowserSession | None) -> User | None:
    if browser is None or browser.user_id is None or browser.sid is None:
        return None
    stored = session.get(ReviewSession, _session_key(browser.sid))
    # looked up on every request: signing out or the session's end is at once
    if stored is None or stored.user_id != browser.user_id or stored.expires_at <= utcnow():
        return None
    user = session.get(User, browser.user_id)
    # disabling an account or a new password ends its sessions at once too
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
