"""Completion callbacks (workers/callbacks.py): signing, the SSRF guard, retries, and one delivery end to
end through the embedded broker and worker. A receiver is http.server on 127.0.0.1 in a thread; loopback
is admitted through the configurable allow-list (BAYOU_CALLBACK_ALLOWED_NETWORKS) except where a test
checks the refusal. Tasks other than the end-to-end one run eagerly (`task.apply`), so retries happen
at once instead of after their backoff."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import shutil
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from storage.documents import create_document, set_status
from storage.models import DocumentStatus
from tests.conftest import WorkerDocuments
from workers.callbacks import (
    CALLBACK_TASK,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    CallbackConfig,
    RefusedDestination,
    backoff_s,
    callback_config,
    callback_secret,
    check_destination,
    deliver,
    schedule_callback,
    sign,
    verify,
)

S = DocumentStatus
DOCUMENTS = WorkerDocuments()


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
    """A failed document with `url` as its callback_url, set failed directly (no hook ran)."""
    document_id = DOCUMENTS.create(runtime, b"%PDF-1.4 not really " + str(seed).encode(), callback_url=url)
    with runtime.sessions() as session:
        set_status(session, document_id, S.PROCESSING)
        set_status(session, document_id, S.FAILED, error_code="corrupt_file", error_message="bad bytes")
    return document_id


def _failed_by_hook(runtime: Any, url: str, content: bytes) -> str:
    """A document failed through workers.documents.fail, whose hook queues its callback."""
    from workers.documents import fail

    document_id = DOCUMENTS.create(runtime, content, callback_url=url)
    with runtime.sessions() as session:
        set_status(session, document_id, S.PROCESSING)
        assert fail(session, document_id, "corrupt_file", "the file is damaged")  # the hook queues it
    return document_id


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
        # IPv4 inside IPv6 (issue 15): NAT64 of the metadata address and of loopback, local-use NAT64,
        # 6to4 (refused whatever it carries), IPv4-compatible, IPv4-translated, site-local, Teredo
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data",
        "http://[64:ff9b::7f00:1]/x",
        "http://[64:ff9b:1::a9fe:a9fe]/x",
        "http://[2002:a9fe:a9fe::1]/x",
        "http://[2002:808:808::1]/x",
        "http://[::a9fe:a9fe]/x",
        "http://[::169.254.169.254]/x",
        "http://[::8.8.8.8]/x",
        "http://[::ffff:0:a9fe:a9fe]/x",
        "http://[fec0::1]/x",
        "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/x",
        # the IETF block, including the addresses Python calls global
        "http://192.0.0.1/x",
        "http://192.0.0.9/x",
        "http://192.0.0.170/x",
    ],
)
def test_non_public_destinations_are_refused_unless_allowed(url: str) -> None:
    with pytest.raises(RefusedDestination):
        check_destination(url, CallbackConfig(secret=b"k"))
    if url.startswith("http"):
        assert check_destination(url, CallbackConfig(secret=b"k", allow_private=True))


@pytest.mark.parametrize(
    "url", ["http://8.8.8.8/x", "http://[2606:4700::1111]/x", "http://[64:ff9b::808:808]/x"]
)
def test_public_destinations_pass_nat64_of_a_public_address_included(url: str) -> None:
    assert check_destination(url, CallbackConfig(secret=b"k"))


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
    assert app.sent == [((CALLBACK_TASK,), {"args": [with_url], "queue": "callbacks"})]


# --- end to end: the hook in workers.documents.fail, the embedded broker and worker ----------------------


def test_a_finished_document_posts_its_signed_json_to_the_callback_url(
    install: Any, receiver: Receiver
) -> None:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.keys import create_key
    from workers.embedded import start_worker_thread

    document_id = _failed_by_hook(install, receiver.url, b"%PDF-1.4 end to end")

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
        got = client.get(f"/v1/documents/{document_id}", headers={"Authorization": f"Bearer {key}"})
    assert got.status_code == 200
    assert json.loads(body) == got.json()
    assert got.json()["status"] == "failed" and got.json()["error"]["code"] == "corrupt_file"


def test_a_document_stored_done_queues_its_callback_on_its_own_queue(
    install: Any, receiver: Receiver
) -> None:
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

    assert waiting_messages(get_app(), install.settings, "callbacks") == 1
    assert waiting_messages(get_app(), install.settings, "cpu") == 0
    assert _run_task(document.id) == "delivered"  # what the worker would run for that message
    [(headers, body)] = receiver.requests
    assert _verified(install, headers, body)
    assert json.loads(body)["status"] == "done" and json.loads(body)["result"]["data"] == {"total": "1.00"}


# --- slow and greedy receivers (issue 15): a deadline per try, a read cap, documents never wait -----------


class RawReceiver:
    """A misbehaving receiver on 127.0.0.1: reads the request, then hands the connection to `answer`
    (in a thread per connection) until `close()`."""

    def __init__(self, answer: Callable[[socket.socket, RawReceiver], None]) -> None:
        self.answer = answer
        self.connected = threading.Event()
        self.finished = threading.Event()
        self.closing = threading.Event()
        self.sent = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(connection)
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        try:
            _read_request(connection)
            self.connected.set()
            self.answer(connection, self)
        except OSError:
            pass
        finally:
            self.finished.set()
            connection.close()

    def close(self) -> None:
        self.closing.set()
        self.listener.close()
        for connection in self.connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


def _read_request(connection: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        data += connection.recv(65536) or b"\r\n\r\n"
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        ),
        0,
    )
    while len(body) < length:
        body += connection.recv(65536) or b"x" * length


def _drip(connection: socket.socket, receiver: RawReceiver) -> None:
    # one byte of the status line every 0.3 s: every read returns in time, the headers never end (for 8 s)
    for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 25:
        if receiver.closing.wait(0.3):
            return
        connection.sendall(bytes([byte]))


def _huge(connection: socket.socket, receiver: RawReceiver) -> None:
    size = 100 * 2**20
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
    chunk = b"\0" * 65536
    while receiver.sent < size:
        connection.sendall(chunk)  # OSError once the client has closed: _serve ends
        receiver.sent += len(chunk)


@pytest.fixture
def raw_receiver() -> Iterator[Callable[[Callable[[socket.socket, RawReceiver], None]], RawReceiver]]:
    made: list[RawReceiver] = []

    def make(answer: Callable[[socket.socket, RawReceiver], None]) -> RawReceiver:
        made.append(RawReceiver(answer))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


def test_a_receiver_dripping_its_answer_is_cut_off_at_the_deadline(install: Any, raw_receiver: Any) -> None:
    import httpcore

    receiver = raw_receiver(_drip)
    document_id = _document(install, receiver.url)
    config = dataclasses.replace(callback_config(install.settings), timeout_s=1.0)

    started = time.monotonic()
    with pytest.raises(httpcore.TimeoutException):
        deliver(document_id, config=config)
    assert time.monotonic() - started < 2.0  # the deadline, not 0.3 s per byte for ever
    assert receiver.connected.is_set()


def test_a_huge_answer_is_not_read(install: Any, raw_receiver: Any) -> None:
    receiver = raw_receiver(_huge)
    document_id = _document(install, receiver.url)

    assert deliver(document_id) == "delivered"
    assert receiver.finished.wait(10)
    # what the kernel's buffers took before the client closed, far from the 100 MiB answer
    assert receiver.sent < 32 * 2**20


def test_a_slow_callback_does_not_hold_up_documents_in_the_embedded_worker(
    install: Any, raw_receiver: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers.dispatch import enqueue
    from workers.embedded import start_worker_thread

    monkeypatch.setenv("BAYOU_CALLBACK_TIMEOUT_S", "60")  # the slow receiver holds its try all test long
    _forget()
    runtime = get_runtime_now()
    receiver = raw_receiver(_drip)
    _failed_by_hook(runtime, receiver.url, b"%PDF-1.4 its callback is slow")
    with runtime.sessions() as session:
        queued, _ = create_document(
            session,
            runtime.blobs,
            stream_or_path=io.BytesIO(b"%PDF-1.4 not a real pdf, rasterising fails at once"),
            filename="b.pdf",
            media_type="application/pdf",
            doc_type="receipt",
        )
    enqueue(queued.id, model=None, doc_type="receipt")

    worker = start_worker_thread(sweep_every_s=3600)
    try:
        assert receiver.connected.wait(30), "the callback never started"
        deadline = time.monotonic() + 20
        # queued, then processing while it is rasterised: wait for where it ends, not only for it to start
        unfinished = {S.QUEUED.value, S.PROCESSING.value}
        while _status(runtime, queued.id) in unfinished and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _status(runtime, queued.id) == S.FAILED.value  # rasterised (and failed) meanwhile
        assert not receiver.finished.is_set()  # while the callback's try was still waiting
    finally:
        receiver.close()  # ends the try (the connection closes), so the worker can stop
        worker.stop()


def get_runtime_now() -> Any:
    from workers.runtime import get_runtime

    return get_runtime()


def _status(runtime: Any, document_id: str) -> str:
    from storage.models import Document

    with runtime.sessions() as session:
        return session.get(Document, document_id).status
