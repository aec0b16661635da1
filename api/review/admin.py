"""/review/admin: pages for admins only (a reviewer gets 403). Today: the accounts of the review UI."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from api.deps import SessionDep
from api.review import throttle, users
from api.review.auth import MIN_PASSWORD_LENGTH, UserExists
from api.review.web import PREFIX, AdminDep, FormDep, ReviewRoute, Visitor, redirect
from storage.models import User, UserRole

# included by routes.router, which adds /review in front
router = APIRouter(prefix="/admin", route_class=ReviewRoute, include_in_schema=False)

USERS_URL = f"{PREFIX}/admin/users"
# the notices a redirect back to the list may name (anything else in ?done= is ignored)
NOTICES = {
    "created": "Account created.",
    "role": "Role changed.",
    "disabled": "Account disabled: its sessions have ended.",
    "enabled": "Account enabled.",
}


@router.get("")
def admin_home(_visitor: AdminDep) -> Response:
    return redirect(USERS_URL)


@router.get("/users")
def users_page(visitor: AdminDep, session: SessionDep, done: str = "") -> Response:
    return _users_response(visitor, session, notice=NOTICES.get(done))


def _users_response(
    visitor: Visitor,
    session: SessionDep,
    *,
    notice: str | None = None,
    error: str | None = None,
    new: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    """`new`: what was typed into the create form, shown again after a refusal (never the password)."""
    accounts = users.list_users(session)
    context = {
        "users": accounts,
        # locked for every address (many addresses guessed at it); a pair lock shuts out only its address
        "locks": throttle.account_locks(session, [user.email for user in accounts]),
        "audit": users.user_audit(session),
        "roles": [role.value for role in UserRole],
        "notice": notice,
        "error": error,
        "new": new or {"email": "", "role": UserRole.REVIEWER.value},
        "min_password": MIN_PASSWORD_LENGTH,
    }
    return visitor.render("admin_users.html", context, status=status)


@router.post("/users")
def create_user(visitor: AdminDep, session: SessionDep, form: FormDep) -> Response:
    email, role = str(form.get("email") or "").strip(), str(form.get("role") or "")
    password = str(form.get("password") or "")
    try:
        users.add_user(session, actor=visitor.actor, email=email, role=role, password=password)
    except (ValueError, UserExists) as exc:
        new = {"email": email, "role": role}
        return _users_response(visitor, session, error=f"Not created: {exc}.", new=new, status=422)
    return redirect(f"{USERS_URL}?done=created")


@router.post("/users/{user_id}/role")
def change_role(visitor: AdminDep, session: SessionDep, form: FormDep, user_id: int) -> Response:
    role = str(form.get("role") or "")
    try:
        users.change_role(session, actor=_admin(visitor), user_id=user_id, role=role)
    except (ValueError, users.NotAllowed) as exc:
        return _users_response(visitor, session, error=f"Not changed: {exc}.", status=_status(exc))
    return redirect(f"{USERS_URL}?done=role")


@router.post("/users/{user_id}/disable")
def disable(visitor: AdminDep, session: SessionDep, _form: FormDep, user_id: int) -> Response:
    return _set_disabled(visitor, session, user_id, disabled=True)


@router.post("/users/{user_id}/enable")
def enable(visitor: AdminDep, session: SessionDep, _form: FormDep, user_id: int) -> Response:
    return _set_disabled(visitor, session, user_id, disabled=False)


def _set_disabled(visitor: Visitor, session: SessionDep, user_id: int, *, disabled: bool) -> Response:
    try:
        users.set_disabled(session, actor=_admin(visitor), user_id=user_id, disabled=disabled)
    except users.NotAllowed as exc:
        return _users_response(visitor, session, error=f"Not changed: {exc}.", status=_status(exc))
    return redirect(f"{USERS_URL}?done={'disabled' if disabled else 'enabled'}")


def _admin(visitor: Visitor) -> User:
    assert visitor.user is not None  # AdminDep let only a signed-in admin through
    return visitor.user


def _status(exc: Exception) -> int:
    return 409 if isinstance(exc, users.NotAllowed) else 422
