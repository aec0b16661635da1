"""What an admin does to review-UI accounts: create, change role, disable, enable. Each change is written
together with its audit entry (one commit), so the trail never misses a change that happened.

An admin cannot demote or disable their own account: that way there is always at least one admin left who
can undo a mistake, and nobody locks themselves out by a slip of the mouse."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.review import throttle
from api.review.auth import UserExists, create_user, normalize_email
from storage.documents import record_audit
from storage.errors import NotFound
from storage.models import AuditEntry, User, UserRole

AUDIT_PREFIX = "user."
AUDIT_SHOWN = 50


class NotAllowed(Exception):
    pass


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.email)))


def user_audit(session: Session, *, limit: int = AUDIT_SHOWN) -> list[AuditEntry]:
    """The latest account changes, newest first."""
    statement = (
        select(AuditEntry)
        .where(AuditEntry.action.startswith(AUDIT_PREFIX))
        .order_by(AuditEntry.id.desc())
        .limit(limit)
    )
    return list(session.scalars(statement))


def add_user(session: Session, *, actor: str, email: str, role: str, password: str) -> User:
    """Raises ValueError (bad details) or UserExists, before anything is stored."""
    try:
        user = create_user(session, email=email, role=role, password=password, commit=False)
    except IntegrityError as exc:
        # the same address added by someone else between the look-up and the insert
        session.rollback()
        raise UserExists(f"a user {normalize_email(email)} exists already") from exc
    _audit(session, actor, "user.create", user)
    return user


def change_role(session: Session, *, actor: User, user_id: int, role: str) -> User:
    if role not in {r.value for r in UserRole}:
        raise ValueError(f"role must be one of {', '.join(r.value for r in UserRole)}")
    user = _other_user(session, actor, user_id, "change your own role")
    if user.role == role:
        return user
    user.role = role
    _audit(session, _actor(actor), "user.role", user)
    return user


def set_disabled(session: Session, *, actor: User, user_id: int, disabled: bool) -> User:
    user = _other_user(session, actor, user_id, "disable your own account")
    return apply_disabled(session, user, disabled=disabled, actor=_actor(actor))


def apply_disabled(session: Session, user: User, *, disabled: bool, actor: str) -> User:
    """No check of who asks: for the admin page (after its checks) and the command line (the operator)."""
    if user.disabled == disabled:
        return user
    user.disabled = disabled
    if not disabled:
        # a fresh start: a lock from before the account was disabled has no reason to outlive it
        throttle.clear_account(session, user.email)
    _audit(session, actor, "user.disable" if disabled else "user.enable", user)
    return user


def find_user(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == normalize_email(email)))


def _other_user(session: Session, actor: User, user_id: int, what: str) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"no user {user_id}")
    if user.id == actor.id:
        raise NotAllowed(f"you cannot {what}: ask another admin")
    return user


def _actor(user: User) -> str:
    return f"user:{user.email}"


def _audit(session: Session, actor: str, action: str, user: User) -> None:
    # record_audit commits: the change to the user and its entry are stored together
    record_audit(
        session, actor=actor, action=action, detail={"user": user.email, "role": user.role, "id": user.id}
    )
