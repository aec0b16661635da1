"""Every /v1 request is authenticated and rate limited here, before a byte of its body is read.

FastAPI reads and parses a route's body before it runs the route's dependencies, so a key checked by a
dependency alone let anyone make the server read (and spool to disk) a 25 MB upload only to answer 401.
This middleware looks at the `Authorization` header alone, answers 401/429 without reading the body, and
leaves the caller in the request's state, where the `CurrentKey` dependency takes it from: the key is still
looked up once per request, so the upload path costs what it did."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import ApiError, error_response
from api.keys import verify_key
from api.ratelimit import retry_after_header

if TYPE_CHECKING:
    from api.deps import AppState

# where the caller is left in the request's state (`request.state.api_caller`)
STATE_NAME = "api_caller"
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True)
class ApiCaller:
    """The key a request was made with: what routes need of it (no ORM row outliving its session)."""

    id: int
    name: str
    prefix: str


def is_v1(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


def authenticate_caller(state: AppState, authorization: str | None) -> ApiCaller:
    """The caller of a request with this `Authorization` header; raises ApiError 401 or 429."""
    scheme, _, presented = (authorization or "").partition(" ")
    if not authorization:
        raise ApiError(401, "unauthorized", "an API key is required", headers=_CHALLENGE)
    if scheme.lower() != "bearer" or not presented.strip():
        raise ApiError(401, "unauthorized", "invalid or revoked API key", headers=_CHALLENGE)
    with state.sessions() as session:
        key = verify_key(session, presented.strip())
        if key is None:
            raise ApiError(401, "unauthorized", "invalid or revoked API key", headers=_CHALLENGE)
        caller = ApiCaller(id=key.id, name=key.name, prefix=key.prefix)
    wait_s = state.buckets.take(caller.prefix)
    if wait_s > 0:
        raise ApiError(
            429,
            "rate_limited",
            "too many requests for this API key",
            headers={"Retry-After": retry_after_header(wait_s)},
        )
    return caller


class ApiKeyGate:
    def __init__(self, app: ASGIApp, state: AppState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_v1(scope["path"]):
            await self.app(scope, receive, send)
            return
        authorization = Headers(scope=scope).get("authorization")
        try:
            # a database read: in a worker thread, as the dependency that did this before ran
            caller = await run_in_threadpool(authenticate_caller, self.state, authorization)
        except ApiError as exc:
            response = error_response(exc.status, exc.code, exc.message, exc.headers)
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})[STATE_NAME] = caller
        await self.app(scope, receive, send)
