"""Completion callbacks (workers/callbacks.py): signing, the SSRF guard, retries, and one delivery end to
end through the embedded broker and worker. A receiver is http.server on 127.0.0.1 in a thread; loopback
is admitted through the configurable allow-list (BAYOU_CALLBACK_ALLOWED_NETWORKS) except where a test
checks the refusal. Tasks other than the end-to-end one run eagerly (`task.apply`), so retries happen
at once instead of after their backoff."""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from storage.documents import create_document, set_status
from storage.models import DocumentStatus
from workers.callbacks import (
    CALLBACK_TASK,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    CallbackConfig,
    RefusedDestination,
    backoff_s,
    callback_secret,
    check_destination,
    schedule_callback,
    sign,
    verify,
)

S = DocumentStatus


# --- a receiver ---------------------------------------------------------------------------------------


class Receiver:
    """Records each POST (headers, raw body) and answers with the next scripted status (then 200)."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.script: list[int] = []
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append((dict(self.headers.items()), body))
                status = receiver.script.pop(0) if receiver.script else 200
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", f"http://127.0.0.1:{receiver.port}/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()
                receiver.arrived.set()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks/bayou?token=abc"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


# --- an installation: data dir with SQLite at head, the embedded broker, loopback allowed --------------


def _forget() -> None:
    from bayou.settings import get_settings
    from workers.app import get_app
    from workers.runtime import reset_runtime

    get_settings.cache_clear()
    get_app.cache_clear()
    reset_runtime()


@pytest.fixture
def install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, _sqlite_at_head: Path) -> Iterator[Any]:
    from workers.runtime import get_runtime

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shutil.copyfile(_sqlite_at_head, data_dir / "bayou.db")
    for name, value in {
        "BAYOU_DATA_DIR": str(data_dir),
        "BAYOU_DATABASE_URL": "",
        "BAYOU_BROKER_URL": "",
        "BAYOU_CALLBACK_ALLOWED_NETWORKS": '["127.0.0.0/8"]',
        "BAYOU_CALLBACK_ALLOW_PRIVATE": "false",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("BAYOU_CALLBACK_SECRET", raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env
    _forget()
    yield get_runtime()
    monkeypatch.undo()
    _forget()


def _document(runtime: Any, url: str | None, *, seed: int = 0) -> str:
    with runtime.sessions() as session:
        document, _ = create_document(
            session,
            runtime.blobs,
            stream_or_path=io.BytesIO(b"%PDF-1.4 not really " + str(seed).encode()),
            filename="receipt.pdf",
            media_type="application/pdf",
            doc_type="receipt",
            callback_url=url,
        )
        set_status(session, document.id, S.PROCESSING)
        set_status(session, document.id, S.FAILED, error_code="corrupt_file", error_message="bad bytes")
        return document.id


def _run_task(document_id: str) -> str:
    from workers.app import get_app

    return get_app().tasks[CALLBACK_TASK].apply(args=[document_id]).get(disable_sync_subtasks=False)


def _verified(runtime: Any, headers: dict[str, str], body: bytes) -> bool:
    return verify(
        callback_secret(runtime.settings), headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER]
    )


# --- signing ------------------------------------------------------------------------------------------


def test_the_signature_verifies_with_the_secret_and_fails_otherwise() -> None:
    body = b'{"id":"doc_1","status":"done"}'
    now = time.time()
    timestamp = str(int(now))
    signature = sign(b"s3cret", timestamp, body)

    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    assert verify(b"s3cret", timestamp, body, signature, now=now)
    assert not verify(b"wrong", timestamp, body, signature, now=now)
    assert not verify(b"s3cret", timestamp, body + b" ", signature, now=now)
    assert not verify(b"s3cret", str(int(now) + 1), body, signature, now=now)  # timestamp is signed
    assert not verify(b"s3cret", timestamp, body, signature, now=now + 3600)  # a replay, later


def test_the_secret_file_is_created_private_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bayou.settings import Settings

    monkeypatch.delenv("BAYOU_CALLBACK_SECRET", raising=False)
    monkeypatch.chdir(tmp_path)
    settings = Settings(_env_file=None, data_dir=tmp_path / "d")

    first = callback_secret(settings)

    path = tmp_path / "d" / "callback-secret"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(first) == 64 and callback_secret(settings) == first
    monkeypatch.setenv("BAYOU_CALLBACK_SECRET", "from-env")
    assert callback_secret(Settings(_env_file=None, data_dir=tmp_path / "d")) == b"from-env"


# --- the destination guard ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/x",
        "http://localhost/x",
        "http://10.1.2.3/x",
        "http://192.168.0.1/x",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://0.0.0.0/x",
        "ftp://example.com/x",
    ],
)
def test_non_public_destinations_are_refused_unless_allowed(url: str) -> None:
    with pytest.raises(RefusedDestination):
        check_destination(url, CallbackConfig(secret=b"k"))
    if url.startswith("http"):
        assert check_destination(url, CallbackConfig(secret=b"k", allow_private=True))


def test_an_allowed_network_admits_only_itself() -> None:
    import ipaddress

    config = CallbackConfig(secret=b"k", allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),))
    assert check_destination("http://127.0.0.1:9/x", config).address == "127.0.0.1"
    with pytest.raises(RefusedDestination):
        check_destination("http://10.0.0.1/x", config)


def test_backoff_spreads_six_tries_over_about_half_an_hour() -> None:
    total = sum(backoff_s(n) for n in range(5))
    assert 20 * 60 < total < 40 * 60


# --- the task -----------------------------------------------------------------------------------------


def test_500_then_200_is_retried_then_delivered(install: Any, receiver: Receiver) -> None:
    receiver.script = [500]
    document_id = _document(install, receiver.url)

    assert _run_task(document_id) == "delivered"

    assert len(receiver.requests) == 2
    assert all(_verified(install, headers, body) for headers, body in receiver.requests)


def test_429_is_retried(install: Any, receiver: Receiver) -> None:
    receiver.script = [429, 503]
    assert _run_task(_document(install, receiver.url)) == "delivered"
    assert len(receiver.requests) == 3


def test_404_is_not_retried(install: Any, receiver: Receiver) -> None:
    receiver.script = [404]
    assert _run_task(_document(install, receiver.url)) == "rejected"
    assert len(receiver.requests) == 1


def test_a_redirect_is_not_followed(install: Any, receiver: Receiver) -> None:
    receiver.script = [302]
    assert _run_task(_document(install, receiver.url)) == "rejected"
    assert len(receiver.requests) == 1


def test_connection_errors_are_retried_a_bounded_number_of_times(install: Any) -> None:
    import socket

    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    assert _run_task(_document(install, f"http://127.0.0.1:{port}/x")) == "gave_up"


def test_a_private_address_is_refused_when_not_allowed(
    install: Any, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    document_id = _document(install, receiver.url)
    monkeypatch.setenv("BAYOU_CALLBACK_ALLOWED_NETWORKS", "[]")
    _forget()  # settings are read once per process; this test changes them
    assert _run_task(document_id) == "refused"
    assert receiver.requests == []


def test_the_hook_queues_nothing_without_a_callback_url(install: Any) -> None:
    class Recorder:
        sent: list[Any] = []

        def send_task(self, *args: Any, **kwargs: Any) -> None:
            self.sent.append((args, kwargs))

    app = Recorder()
    without = _document(install, None, seed=1)
    with_url = _document(install, "https://example.com/hook", seed=2)
    with install.sessions() as session:
        schedule_callback(session, without, app=app)  # type: ignore[arg-type]
        schedule_callback(session, with_url, app=app)  # type: ignore[arg-type]
    assert app.sent == [((CALLBACK_TASK,), {"args": [with_url], "queue": "cpu"})]


# --- end to end: the hook in workers.documents.fail, the embedded broker and worker ----------------------


def test_a_finished_document_posts_its_signed_json_to_the_callback_url(
    install: Any, receiver: Receiver
) -> None:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.keys import create_key
    from workers.documents import fail
    from workers.embedded import start_worker_thread

    with install.sessions() as session:
        document, _ = create_document(
            session,
            install.blobs,
            stream_or_path=io.BytesIO(b"%PDF-1.4 end to end"),
            filename="receipt.pdf",
            media_type="application/pdf",
            doc_type="receipt",
            callback_url=receiver.url,
        )
        set_status(session, document.id, S.PROCESSING)
        assert fail(session, document.id, "corrupt_file", "the file is damaged")  # the hook queues it

    worker = start_worker_thread(sweep_every_s=3600)
    try:
        assert receiver.arrived.wait(30), "no callback arrived"
    finally:
        worker.stop()

    [(headers, body)] = receiver.requests
    assert headers["Content-Type"] == "application/json"
    assert _verified(install, headers, body)
    assert not verify(b"not the secret", headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    with TestClient(create_app(install.settings)) as client:
        with install.sessions() as session:
            key = create_key(session, "callbacks-test")
        got = client.get(f"/v1/documents/{document.id}", headers={"Authorization": f"Bearer {key}"})
    assert got.status_code == 200
    assert json.loads(body) == got.json()
    assert got.json()["status"] == "failed" and got.json()["error"]["code"] == "corrupt_file"


def test_a_document_stored_done_queues_its_callback_on_cpu(install: Any, receiver: Receiver) -> None:
    from extractor.result import Result
    from workers.app import get_app
    from workers.broker import waiting_messages
    from workers.extracting import ExtractJob, _store

    with install.sessions() as session:
        document, _ = create_document(
            session,
            install.blobs,
            stream_or_path=io.BytesIO(b"%PDF-1.4 done"),
            filename="receipt.pdf",
            media_type="application/pdf",
            doc_type="receipt",
            callback_url=receiver.url,
        )
        set_status(session, document.id, S.PROCESSING)
        result = Result(doc_type="receipt", model="fake", data={"total": "1.00"}, valid=True)
        assert _store(session, ExtractJob(document.id, "key-1"), result) == "done"  # the hook queues it

    assert waiting_messages(get_app(), install.settings, "cpu") == 1
    assert _run_task(document.id) == "delivered"  # what the worker would run for that message
    [(headers, body)] = receiver.requests
    assert _verified(install, headers, body)
    assert json.loads(body)["status"] == "done" and json.loads(body)["result"]["data"] == {"total": "1.00"}
