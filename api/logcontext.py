"""What API log lines are about: a request id per request (the caller's `X-Request-ID` when it is a
sensible one, else a new one, echoed in the response) and the document id of `/{document_id}` routes."""

from __future__ import annotations

import re
import uuid

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bayou.logs import bind_document_id, scoped_context

REQUEST_ID_HEADER = "X-Request-ID"
# a caller's id goes into our logs, so only a short token of harmless characters is taken
_ACCEPTABLE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class RequestContextMiddleware:
    """Outermost middleware: binds the request id for everything the request logs (uvicorn's access line
    included) and unbinds every id afterwards."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.lower().encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        with scoped_context(request_id=request_id):
            await self.app(scope, receive, send_with_id)


def _request_id(scope: Scope) -> str:
    wanted = REQUEST_ID_HEADER.lower().encode()
    for name, value in scope.get("headers", []):
        if name == wanted:
            text = value.decode("latin-1")
            if _ACCEPTABLE_REQUEST_ID.fullmatch(text):
                return text
    return uuid.uuid4().hex


async def bind_path_document_id(request: Request) -> None:
    """An app-wide dependency: a route with `{document_id}` logs under that id. async on purpose: a sync
    dependency runs in a worker thread, and what it binds would stay there."""
    document_id = request.path_params.get("document_id")
    if isinstance(document_id, str):
        bind_document_id(document_id)
