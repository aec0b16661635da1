"""Failed sign-ins, counted in the database under three keys at once, each with its own limit:

* the account and the client address together (`pair`): the old per-account lock, but a stranger who
  guesses at an account locks only their own address out of it, never the account's owner;
* the account from every address (`account`): many addresses guessing at one account (a botnet) are
  stopped too, at a limit one address alone never reaches (the pair lock comes first);
* the client address at every account (`address`): one address spraying many accounts is stopped.

A key is counted whether or not an account has that email, so the answers never tell a known email from an
unknown one. Each failure is one atomic `INSERT ... ON CONFLICT DO UPDATE ... RETURNING` (no read-modify-
write: parallel wrong passwords are all counted), and the lock is decided from the count it returned.
Keys hold SHA-256 hashes, never an email or an address.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sqlalchemy import case, delete, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from storage.columns import UTCDateTime, utcnow
from storage.models import SignInFailure

# failures counted within a window of this length (from its first failure); a key that reaches its limit
# is locked for as long
WINDOW = timedelta(minutes=15)
LOCK_DURATION = timedelta(minutes=15)
LIMITS = {"pair": 5, "address": 20, "account": 50}


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def keys_for(email: str, address: str) -> dict[str, str]:
    """The three keys of a sign-in attempt; `email` normalised already. The pair key starts with the
    account's own hash, so every pair of an account can be found (and cleared) without knowing addresses."""
    account = _digest("account", email)
    return {
        "pair": f"pair:{account}:{_digest('address', address)}",
        "account": f"account:{account}",
        "address": f"address:{_digest('address', address)}",
    }


def locked_until(session: Session, keys: dict[str, str], now: datetime | None = None) -> datetime | None:
    """The latest lock in force on any of the keys, or None."""
    now = now or utcnow()
    return session.scalar(
        select(func.max(SignInFailure.locked_until)).where(
            SignInFailure.key.in_(keys.values()), SignInFailure.locked_until > now
        )
    )


def record_failure(session: Session, keys: dict[str, str], now: datetime | None = None) -> datetime | None:
    """Counts one failure under every key; returns the lock in force afterwards (None if none)."""
    now = now or utcnow()
    _forget_stale(session, now)
    for kind, key in keys.items():
        if _increment(session, key, now) >= LIMITS[kind]:
            # decided on the count this failure made: a lost update cannot happen, whoever else is failing
            session.execute(
                update(SignInFailure)
                .where(SignInFailure.key == key)
                .values(failures=0, window_start=now, locked_until=now + LOCK_DURATION)
            )
    session.commit()
    return locked_until(session, keys, now)


def record_success(session: Session, keys: dict[str, str]) -> None:
    """A right password starts the account's counts afresh; the address's count stays (signing in to an
    account of one's own must not buy more guesses at others)."""
    session.execute(delete(SignInFailure).where(SignInFailure.key.in_([keys["pair"], keys["account"]])))
    session.commit()


def account_locks(session: Session, emails: list[str], now: datetime | None = None) -> dict[str, datetime]:
    """The accounts among `emails` locked for every address (the `account` key), with their lock's end."""
    now = now or utcnow()
    by_key = {keys_for(email, "")["account"]: email for email in emails}
    rows = session.execute(
        select(SignInFailure.key, SignInFailure.locked_until).where(
            SignInFailure.key.in_(by_key), SignInFailure.locked_until > now
        )
    )
    return {by_key[key]: until for key, until in rows if until is not None}


def clear_account(session: Session, email: str) -> None:
    """Every count and lock of an account, from every address (an admin enabling it gives a fresh start).
    Does not commit: the caller stores it with its own change."""
    any_address = keys_for(email, "")
    pairs = any_address["pair"].rsplit(":", 1)[0] + ":%"
    session.execute(
        delete(SignInFailure).where(
            (SignInFailure.key == any_address["account"]) | SignInFailure.key.like(pairs)
        )
    )


def _increment(session: Session, key: str, now: datetime) -> int:
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stamp = literal(now, UTCDateTime())
    stale = SignInFailure.window_start <= literal(now - WINDOW, UTCDateTime())
    statement = (
        insert(SignInFailure)
        .values(key=key, failures=1, window_start=now)
        .on_conflict_do_update(
            index_elements=[SignInFailure.key],
            set_={
                "failures": case((stale, 1), else_=SignInFailure.failures + 1),
                "window_start": case((stale, stamp), else_=SignInFailure.window_start),
            },
        )
        .returning(SignInFailure.failures)
    )
    return int(session.execute(statement).scalar_one())


def _forget_stale(session: Session, now: datetime) -> None:
    # keeps the table to the keys that failed lately: one row per recent address or email, no more
    session.execute(
        delete(SignInFailure).where(
            SignInFailure.window_start <= now - WINDOW - LOCK_DURATION,
            (SignInFailure.locked_until.is_(None)) | (SignInFailure.locked_until <= now),
        )
    )
