"""Headers every answer gets unless its route set them: `nosniff` everywhere; `Cache-Control: no-store`
on /v1 and /review, whose answers (documents, licence page images, exports, error pages) are personal
data that must not land in a browser's or a proxy's disk cache; and under /review the review pages'
security headers on every answer, the framework's own refusals (an unknown path, a bad query) included.
A route that wants otherwise (the review UI's static files) says so itself."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.keygate import is_v1
from api.review.web import PREFIX as REVIEW_PREFIX
from api.review.web import SECURITY_HEADERS


def is_review(path: str) -> bool:
    return path == REVIEW_PREFIX or path.startswith(REVIEW_PREFIX + "/")


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        extra = {"X-Content-Type-Options": "nosniff"}
        if is_v1(path):
            extra["Cache-Control"] = "no-store"
        if is_review(path):
            extra.update(SECURITY_HEADERS)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in extra.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
