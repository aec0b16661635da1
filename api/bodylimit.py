"""A cap on request bodies, enforced while they stream in: an honest Content-Length over the cap is
refused before a byte is read, and a body that runs past it (chunked, or lying) is cut off there. The cap
may depend on the request (`limit(scope)`): uploads get the upload cap, every other route a small one."""

from __future__ import annotations

from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response


class BodyTooLarge(HTTPException):
    # an HTTPException so that FastAPI's body parsing passes it on instead of calling it a parse error
    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"the request body is over {limit} bytes")


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int | Callable[[Scope], int]) -> None:
        self.app = app
        self.limit = max_bytes if callable(max_bytes) else (lambda _scope: max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.limit(scope)
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            response = error_response(413, "too_large", BodyTooLarge(max_bytes).detail)
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise BodyTooLarge(max_bytes)
            return message

        await self.app(scope, limited_receive, send)
