"""Every error leaves the API as `{"error": {"code", "message"}}`, whoever raised it: our own refusals,
FastAPI's request validation, Starlette's 404/405, and the typed errors of storage and extractor."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from extractor.errors import InputError
from storage.errors import IllegalTransition, InvalidCursor, NotFound

log = logging.getLogger(__name__)

# codes for errors raised by the framework itself, which knows only the status
_CODES_BY_STATUS = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_type",
    422: "validation_error",
    429: "rate_limited",
    503: "not_ready",
}

# a refused input (extractor.errors.InputError) is 422 unless its code says otherwise
_STATUS_BY_INPUT_CODE = {
    "too_large": 413,
    "empty_file": 415,
    "unsupported_type": 415,
    "folder_not_found": 404,
}


class ApiError(Exception):
    """A refusal with its status and stable code; raised anywhere below a route."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(NotFound, _not_found)
    app.add_exception_handler(IllegalTransition, _conflict)
    app.add_exception_handler(InvalidCursor, _invalid_cursor)
    app.add_exception_handler(InputError, _input_error)
    app.add_exception_handler(Exception, _unexpected)


async def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.headers)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(422, _validation_code(exc), _validation_message(exc))


def _validation_code(exc: RequestValidationError) -> str:
    kinds = {error.get("type") for error in exc.errors()}
    if "json_invalid" in kinds:
        return "malformed_json"
    if kinds == {"missing"}:
        return "missing_field"
    return "validation_error"


def _validation_message(exc: RequestValidationError) -> str:
    # only where and what kind: echoing the offending input could put personal data into responses
    # and logs
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(part) for part in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        # the framework's 400 is a body it could not parse (bytes that are not UTF-8 JSON, broken
        # multipart); the contract calls every malformed request 422
        return error_response(422, "malformed_body", "the request body cannot be parsed")
    code = _CODES_BY_STATUS.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 405:
        # Starlette names only the first route that matched the path; several routes share paths here
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return error_response(exc.status_code, code, message, headers or None)


def _allowed_methods(request: Request) -> list[str]:
    # from the OpenAPI paths, which list every method of a path whatever router holds the routes
    methods: set[str] = set()
    for template, operations in request.app.openapi().get("paths", {}).items():
        pattern, _, _ = compile_path(template)
        if pattern.match(request.url.path):
            methods |= {method.upper() for method in operations}
    return sorted(methods)


async def _not_found(_request: Request, exc: Exception) -> JSONResponse:
    return error_response(404, "not_found", str(exc))


async def _conflict(_request: Request, exc: Exception) -> JSONResponse:
    return error_response(409, "conflict", str(exc))


async def _invalid_cursor(_request: Request, exc: Exception) -> JSONResponse:
    return error_response(422, "invalid_cursor", str(exc))


def input_status(error: InputError) -> int:
    return _STATUS_BY_INPUT_CODE.get(error.code, 422)


def refusal(error: InputError) -> ApiError:
    """The HTTP refusal for a typed input error, for routes that count or log refusals themselves."""
    return ApiError(input_status(error), error.code, error.message)


async def _input_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InputError)
    return error_response(input_status(exc), exc.code, exc.message)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # the traceback goes to the log; the client learns nothing about the internals
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "internal server error")
