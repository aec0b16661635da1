"""API keys: `bayou_` + 256 random bits, shown once. Stored as a plain prefix (to find the row) and a
SHA-256 of the whole key: a key that random cannot be guessed from its hash, so no slow hash is needed,
and verifying stays cheap on every request."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage.columns import utcnow
from storage.errors import NotFound
from storage.models import ApiKey

KEY_PREFIX = "bayou_"
# "bayou_" and 12 characters (72 bits): enough that two keys practically never share a lookup prefix
LOOKUP_LENGTH = len(KEY_PREFIX) + 12
# writing last_used_at on every request would make each read a write; once a minute says enough
LAST_USED_RESOLUTION = timedelta(minutes=1)
MAX_NAME_LENGTH = 100


class KeyNameTaken(Exception):
    pass


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(session: Session, name: str) -> str:
    """A new key named `name`; the key itself is returned once and never stored."""
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"a key name has 1 to {MAX_NAME_LENGTH} characters")
    if session.scalar(select(ApiKey.id).where(ApiKey.name == name)) is not None:
        raise KeyNameTaken(f"a key named {name!r} exists already")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(name=name, prefix=key[:LOOKUP_LENGTH], key_hash=_hash(key)))
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise KeyNameTaken(f"a key named {name!r} exists already") from exc
    return key


def verify_key(session: Session, presented: str | None) -> ApiKey | None:
    """The live key row that `presented` is, or None (unknown, wrong or revoked)."""
    if not presented or not presented.startswith(KEY_PREFIX) or len(presented) <= LOOKUP_LENGTH:
        return None
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == presented[:LOOKUP_LENGTH]))
    # compared in constant time even though the prefix matched: the rest of the key is the secret
    if row is None or not hmac.compare_digest(row.key_hash, _hash(presented)):
        return None
    if row.revoked_at is not None:
        return None
    _touch(session, row)
    return row


def _touch(session: Session, row: ApiKey) -> None:
    now = utcnow()
    if row.last_used_at is not None and now - row.last_used_at < LAST_USED_RESOLUTION:
        return
    row.last_used_at = now
    session.commit()


def revoke_key(session: Session, name: str) -> ApiKey:
    row = session.scalar(select(ApiKey).where(ApiKey.name == name))
    if row is None:
        raise NotFound(f"no API key named {name!r}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.commit()
    return row


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)))


def describe(row: ApiKey) -> dict[str, str | None]:
    """A key's listing without anything secret (the prefix finds rows but opens nothing)."""

    def stamp(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "name": row.name,
        "prefix": row.prefix,
        "created_at": stamp(row.created_at),
        "last_used_at": stamp(row.last_used_at),
        "revoked_at": stamp(row.revoked_at),
    }
