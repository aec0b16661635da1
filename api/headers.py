"""Headers every answer gets unless its route set them: `nosniff` everywhere, and `Cache-Control: no-store`
on /v1 and /review, whose answers (documents, licence page images, exports, error pages) are personal
data that must not land in a browser's or a proxy's disk cache. A route that wants otherwise (the review
UI's static files) says so itself."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.keygate import is_v1

PERSONAL_PREFIXES = ("/review",)


def holds_personal_data(path: str) -> bool:
    return is_v1(path) or any(path == p or path.startswith(p + "/") for p in PERSONAL_PREFIXES)


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        no_store = holds_personal_data(scope["path"])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                if no_store:
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)
