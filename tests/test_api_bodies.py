"""Request bodies: /v1 is authenticated (and rate limited) before a byte of the body is read, and only
uploads may send big bodies; every other route, the sign-in form above all, has a small cap."""

from __future__ import annotations

import asyncio

import pytest

from api.app import LOGIN_BODY_BYTES, SMALL_BODY_BYTES
from api.ratelimit import RateLimit

MIB = 1 << 20
UPLOAD_BYTES = 20 * MIB


def post_unread(app, path: str, headers: dict[str, str], size: int = UPLOAD_BYTES) -> tuple[int, int]:
    """POSTs a `size`-byte body straight to the ASGI app, 1 MiB a message; returns the answer's status and
    how many body messages the app took."""
    taken = 0

    async def receive():
        nonlocal taken
        taken += 1
        return {"type": "http.request", "body": b"x" * MIB, "more_body": taken * MIB < size}

    answers: list[dict] = []

    async def send(message):
        answers.append(message)

    raw_headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    raw_headers += [
        (b"content-length", str(size).encode()),
        (b"content-type", b"multipart/form-data; boundary=b"),
        (b"host", b"testserver"),
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": raw_headers,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    asyncio.run(app(scope, receive, send))
    return answers[0]["status"], taken


@pytest.mark.parametrize("path", ["/v1/documents", "/v1/batches"])
@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer bayou_wrongwrongwrongwrongwrongwrongwrong", "Basic abc"],
    ids=["missing", "wrong", "not-bearer"],
)
def test_an_unauthenticated_post_is_refused_before_its_body_is_read(api_client, path, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    status, taken = post_unread(api_client.app, path, headers)
    assert (status, taken) == (401, 0)


def test_a_rate_limited_upload_is_refused_before_its_body_is_read(make_api_client):
    client = make_api_client(app_kwargs={"rate_limit": RateLimit(per_second=0.01, burst=1)})
    assert client.get("/v1/documents").status_code == 200  # the one token
    status, taken = post_unread(client.app, "/v1/documents", {"Authorization": f"Bearer {client.key}"})
    assert (status, taken) == (429, 0)


def test_an_authenticated_upload_is_read(api_client):
    # the gate lets a good key through to the body (a broken multipart body: refused once looked at)
    headers = {"Authorization": f"Bearer {api_client.key}"}
    status, taken = post_unread(api_client.app, "/v1/documents", headers)
    assert status == 422 and taken >= 1


def test_json_routes_take_small_bodies_only(api_client):
    big = {"folder": "x" * (SMALL_BODY_BYTES + 1), "doc_type": "receipt"}
    response = api_client.post("/v1/batches", json=big)
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"
    review = {"action": "reject", "reason": "x" * (SMALL_BODY_BYTES + 1)}
    assert api_client.post("/v1/documents/doc_x/review", json=review).status_code == 413


def test_the_sign_in_form_takes_a_small_body_only(api_client):
    api_client.headers.pop("Authorization")
    form = {"email": "rita@example.com", "password": "x" * LOGIN_BODY_BYTES, "csrf_token": "t"}
    response = api_client.post("/review/login", data=form)
    assert response.status_code == 413
    # refused from the declared length, before reading: a 25 MB form costs nothing either
    status, taken = post_unread(api_client.app, "/review/login", {})
    assert (status, taken) == (413, 0)
