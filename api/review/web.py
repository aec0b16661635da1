"""Request-level glue for the review pages: who is asking (session cookie), CSRF on every POST, page
rendering, and turning refusals into HTML answers (a redirect to sign-in, a 403 page) instead of the
REST API's JSON errors."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData

from api.deps import SessionDep, State
from api.review.auth import (
    COOKIE_NAME,
    CSRF_FIELD,
    BrowserSession,
    SessionCodec,
    csrf_ok,
    new_anonymous,
    session_secret,
    session_user,
    set_session_cookie,
)
from storage.errors import NotFound
from storage.models import User, UserRole

PREFIX = "/review"
TEMPLATES = Jinja2Templates(directory=Path(__file__).resolve().parent.parent / "templates")


# the pages load nothing from elsewhere and are never framed (clickjacking); data is personal: no caching
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class LoginRequired(Exception):
    pass


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Visitor:
    request: Request
    codec: SessionCodec
    browser: BrowserSession
    user: User | None
    fresh_cookie: bool

    @property
    def csrf(self) -> str:
        return self.browser.csrf

    @property
    def actor(self) -> str:
        assert self.user is not None
        return f"user:{self.user.email}"

    def render(self, template: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
        response = TEMPLATES.TemplateResponse(
            self.request,
            f"review/{template}",
            {"visitor": self, "user": self.user, "csrf_field": CSRF_FIELD, **context},
            status_code=status,
        )
        if self.fresh_cookie:
            self.set_cookie(response, self.browser)
        response.headers.update(SECURITY_HEADERS)
        return response

    def set_cookie(self, response: Response, browser: BrowserSession) -> None:
        set_session_cookie(response, self.request, self.codec, browser)


def _codec(state: State) -> SessionCodec:
    codec = getattr(state, "_review_codec", None)
    if codec is None:
        codec = SessionCodec(session_secret(state.settings))
        state._review_codec = codec  # type: ignore[attr-defined]
    return codec


def visitor(request: Request, state: State, session: SessionDep) -> Visitor:
    codec = _codec(state)
    browser = codec.loads(request.cookies.get(COOKIE_NAME))
    fresh = browser is None
    user = session_user(session, browser)
    if browser is None or (browser.user_id is not None and user is None):
        browser, fresh = new_anonymous(), True
    return Visitor(request, codec, browser, user, fresh)


VisitorDep = Annotated[Visitor, Depends(visitor)]


def signed_in(visitor: VisitorDep) -> Visitor:
    if visitor.user is None:
        raise LoginRequired()
    return visitor


ReviewerDep = Annotated[Visitor, Depends(signed_in)]


def admin(visitor: ReviewerDep) -> Visitor:
    if visitor.user is None or visitor.user.role != UserRole.ADMIN.value:
        raise Refused(403, "this page is for admins")
    return visitor


AdminDep = Annotated[Visitor, Depends(admin)]


async def checked_form(request: Request, visitor: VisitorDep) -> FormData:
    """The POSTed form, once its CSRF token matches the session's."""
    form = await request.form()
    if not csrf_ok(visitor.browser, form.get(CSRF_FIELD)):
        raise Refused(
            403, "the form has expired or did not come from this site; reload the page and try again"
        )
    return form


FormDep = Annotated[FormData, Depends(checked_form)]


def safe_next(target: str | None) -> str:
    """Only a path inside the review UI: never another site."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return f"{PREFIX}/queue"


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


class ReviewRoute(APIRoute):
    """Refusals raised by the dependencies become pages: no session -> sign-in, others -> an error page."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                if request.method != "GET":
                    target = f"{PREFIX}/queue"
                return redirect(f"{PREFIX}/login?next={quote(target, safe='')}")
            except Refused as exc:
                return _error_page(request, exc.status, exc.message)
            except NotFound as exc:
                return _error_page(request, 404, str(exc))

        return handle


def _error_page(request: Request, status: int, message: str) -> HTMLResponse:
    response = TEMPLATES.TemplateResponse(
        request,
        "review/error.html",
        {"visitor": None, "user": None, "status": status, "message": message},
        status_code=status,
    )
    # an error page is a page like the others: never framed, never cached
    response.headers.update(SECURITY_HEADERS)
    return response
