"""One callback POST on the wire, bounded in time and in what it reads.

A receiver is a stranger: it may accept the connection and then answer one byte every few seconds, or
answer hundreds of megabytes. Per-operation timeouts (what an HTTP client offers) never end the first,
since every read returns something in time; reading the answer in full lets the second fill the memory.
So here every socket operation of an attempt (connect, TLS handshake, each write and each read, the
answer's headers included) gets only what is left of one deadline for the whole attempt, and of the
answer's body at most MAX_ANSWER_BYTES are read before the connection is closed (its headers are
bounded by h11, 16 KB). Only the status and Retry-After matter to us.

httpcore (the engine under httpx) is used directly because httpx offers no way to give its transport
another network backend, and the deadline has to sit at the socket.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from typing import Any

import certifi
import httpcore
import httpx

MAX_ANSWER_BYTES = 4096
WRITE_CHUNK = 4096  # a slow reader may take a chunk per deadline check, not the whole body
MAX_RETRY_AFTER_S = 3600.0
# what is worth another try: the network, the deadline, a receiver that spoke HTTP badly
RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (
    httpcore.NetworkError,
    httpcore.TimeoutException,
    httpcore.RemoteProtocolError,
    OSError,
)


@dataclass(frozen=True)
class Answer:
    status: int
    retry_after_s: float | None


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self._at = time.monotonic() + seconds

    def left(self, error: type[Exception]) -> float:
        """Seconds left; raises `error` (an httpcore timeout) once none are."""
        left = self._at - time.monotonic()
        if left <= 0:
            raise error("the callback's deadline has passed")
        return left


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every operation times out at the attempt's deadline, whatever it was given."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: _Deadline) -> None:
        self._stream = stream
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._deadline.left(httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        for start in range(0, len(buffer), WRITE_CHUNK):
            self._stream.write(
                buffer[start : start + WRITE_CHUNK], self._deadline.left(httpcore.WriteTimeout)
            )

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        left = self._deadline.left(httpcore.ConnectTimeout)
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, left), self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, deadline: _Deadline) -> None:
        self._backend = httpcore.SyncBackend()
        self._deadline = deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        left = self._deadline.left(httpcore.ConnectTimeout)
        stream = self._backend.connect_tcp(host, port, left, local_address, socket_options)
        return _DeadlineStream(stream, self._deadline)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def post_once(
    url: httpx.URL, address: str, body: bytes, headers: dict[str, str], deadline_s: float
) -> Answer:
    """POSTs `body` to `address` (already checked) with `url`'s Host, path and TLS server name; no
    redirects followed; at most `deadline_s` seconds in all. Raises one of RETRYABLE_ERRORS on failure."""
    deadline = _Deadline(deadline_s)
    target = url.raw_path  # path and query, as sent
    port = url.port or (443 if url.scheme == "https" else 80)
    request_headers = {**headers, "Host": _host_header(url), "Content-Length": str(len(body))}
    extensions: dict[str, Any] = {"timeout": dict.fromkeys(("connect", "read", "write", "pool"), deadline_s)}
    if url.scheme == "https":
        extensions["sni_hostname"] = url.host
    with (
        httpcore.ConnectionPool(
            ssl_context=ssl.create_default_context(cafile=certifi.where()),
            max_connections=1,
            network_backend=_DeadlineBackend(deadline),
        ) as pool,
        pool.stream(
            "POST",
            httpcore.URL(scheme=url.raw_scheme, host=address.encode(), port=port, target=target),
            headers=list(request_headers.items()),
            content=body,
            extensions=extensions,
        ) as response,
    ):
        _read_at_most(response, MAX_ANSWER_BYTES)
        return Answer(response.status, _retry_after(response.headers))


def _read_at_most(response: httpcore.Response, limit: int) -> None:
    # read (and drop) a little of the body, as a polite client does; the rest is never read: closing the
    # pool closes the connection under it
    read = 0
    for chunk in response.iter_stream():
        read += len(chunk)
        if read >= limit:
            return


def _host_header(url: httpx.URL) -> str:
    host = f"[{url.host}]" if ":" in url.host else url.host
    return host if url.port is None else f"{host}:{url.port}"


def _retry_after(headers: list[tuple[bytes, bytes]]) -> float | None:
    for name, value in headers:
        if name.lower() == b"retry-after":
            try:
                return min(float(value), MAX_RETRY_AFTER_S)
            except ValueError:
                return None
    return None
