"""Completion callbacks: when a document with a `callback_url` reaches a final state of processing
(done, needs_review, failed), its Document JSON (what GET /v1/documents/{id} returns) is POSTed there.

Signing scheme (what a receiver checks):

* `X-Bayou-Timestamp: <unix seconds>`
* `X-Bayou-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + raw body)>`

The receiver recomputes the HMAC over the timestamp header, a dot and the raw request body (bytes, before
any JSON parsing), compares it in constant time, and refuses a timestamp further than a few minutes from
its clock (`verify(..., tolerance_s=300)`), so a captured request cannot be replayed later. A delivery
retried after a failure is signed anew with a fresh timestamp; the body's `id` and `updated_at` identify
a repeat.

The secret is per installation: BAYOU_CALLBACK_SECRET (Settings.callback_secret),
else the file `<data_dir>/callback-secret`, created (0600, 64 hex characters) on first use. The key is
the secret's text as UTF-8, exactly as the file holds it (without the trailing newline).

Delivery: the Celery task `bayou.send_callback` on a queue of its own, `callbacks`, so that a slow
receiver never holds up documents: the embedded worker of `bayou serve` consumes it in a thread of its
own (workers.embedded), and a worker that serves `cpu` serves `callbacks` too (workers.queues). Each
attempt has one deadline for everything it does on the wire (BAYOU_CALLBACK_TIMEOUT_S, 10 s) and reads
at most a few KB of the answer (workers.callback_wire); redirects are never followed (a 3xx is a
refusal); connection errors, timeouts, 5xx and 429 are retried with exponential backoff (6 tries over
about 30 minutes), other 4xx are not. The URL's host is resolved and refused if any address is loopback,
private, link-local, or otherwise not global, IPv4 hidden in IPv6 included (workers.callback_addresses),
unless `allow_private` is on or the address is in `allowed_networks` (BAYOU_CALLBACK_ALLOW_PRIVATE /
BAYOU_CALLBACK_ALLOWED_NETWORKS, a JSON list of CIDRs); the request then goes to the address that was
checked (no second resolution, so DNS rebinding cannot slip in another one), with the original Host
header and TLS server name.
Logs carry document ids and status codes, never bodies or URLs.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import random
import socket
import time
from dataclasses import dataclass

import httpx
from celery import Celery, Task
from sqlalchemy.orm import Session

from bayou.secrets_store import installation_secret
from bayou.settings import Settings, get_settings
from storage.models import Document
from workers.callback_addresses import is_public
from workers.callback_wire import RETRYABLE_ERRORS, Answer, post_once
from workers.default_app import app_or_default
from workers.queues import CALLBACK_QUEUE
from workers.runtime import get_runtime
from workers.transient import register_task

log = logging.getLogger(__name__)

CALLBACK_TASK = "bayou.send_callback"
SIGNATURE_HEADER = "X-Bayou-Signature"
TIMESTAMP_HEADER = "X-Bayou-Timestamp"
SECRET_FILENAME = "callback-secret"

MAX_TRIES = 6  # the first and 5 retries
BACKOFF_BASE_S = 60.0  # 60, 120, 240, 480, 960 s between tries: about 31 minutes in all
BACKOFF_JITTER = 0.2  # each delay +-20 %, so many callbacks failing together do not retry together
DEFAULT_TIMEOUT_S = 10.0  # the whole attempt, not each read
TASK_LIMITS_S = (60, 90)
REPLAY_TOLERANCE_S = 300


# --- configuration ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallbackConfig:
    secret: bytes
    allow_private: bool = False
    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    timeout_s: float = DEFAULT_TIMEOUT_S


def callback_config(settings: Settings | None = None) -> CallbackConfig:
    settings = settings or get_settings()
    return CallbackConfig(
        secret=callback_secret(settings),
        allow_private=settings.callback_allow_private,
        allowed_networks=tuple(
            ipaddress.ip_network(n, strict=False) for n in settings.callback_allowed_networks
        ),
        timeout_s=settings.callback_timeout_s,
    )


def callback_secret(settings: Settings | None = None) -> bytes:
    """BAYOU_CALLBACK_SECRET, else `<data_dir>/callback-secret` (created 0600 on first use)."""
    settings = settings or get_settings()
    configured = settings.callback_secret.get_secret_value()
    if configured:
        return configured.encode()
    return installation_secret(settings.data_dir, SECRET_FILENAME).encode()


# --- signing ----------------------------------------------------------------------------------------


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The X-Bayou-Signature value for this timestamp and raw body."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(
    secret: bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    tolerance_s: float | None = REPLAY_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent (None: any age)."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if tolerance_s is not None and abs((time.time() if now is None else now) - sent) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def signed_headers(secret: bytes, body: bytes, *, now: float | None = None) -> dict[str, str]:
    timestamp = str(int(time.time() if now is None else now))
    return {
        "Content-Type": "application/json",
        "User-Agent": "bayou-callback/1",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    }


def document_body(document: Document) -> bytes:
    """The Document JSON exactly as GET /v1/documents/{id} shapes it (inside the document's session)."""
    from api.schemas import DocumentOut
    from api.serialize import document_json

    data = DocumentOut.model_validate(document_json(document)).model_dump(mode="json")
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


# --- the destination (SSRF) ---------------------------------------------------------------------------


class RefusedDestination(Exception):
    """The callback URL is not one we send to (scheme, or an address that is not public)."""


@dataclass(frozen=True)
class Destination:
    url: httpx.URL  # the original
    address: str  # the checked address the request goes to


def check_destination(url: str, config: CallbackConfig) -> Destination:
    """Resolves the URL's host and refuses it if any of its addresses is not allowed. socket.gaierror
    (no such host, or DNS briefly away) propagates: the caller retries it."""
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise RefusedDestination("not an http(s) URL with a host")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    infos = socket.getaddrinfo(parsed.host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise socket.gaierror(f"{parsed.host} has no address")
    for address in addresses:
        if not _allowed(ipaddress.ip_address(address.split("%", 1)[0]), config):
            raise RefusedDestination("the host resolves to a non-public address")
    return Destination(parsed, addresses[0])


def _allowed(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, config: CallbackConfig) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if config.allow_private or any(ip in network for network in config.allowed_networks):
        return True
    return is_public(ip)


def post(destination: Destination, body: bytes, headers: dict[str, str], deadline_s: float) -> Answer:
    """One POST to the checked address, Host and TLS name those of the URL; redirects not followed;
    `deadline_s` for the whole attempt."""
    return post_once(destination.url, destination.address, body, headers, deadline_s)


# --- the task ---------------------------------------------------------------------------------------


class RetryableStatus(Exception):
    def __init__(self, status: int, retry_after_s: float | None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after_s = retry_after_s


def deliver(document_id: str, *, config: CallbackConfig | None = None) -> str:
    """One try. Returns what happened ("delivered", "rejected", "refused", "no_callback", "gone");
    raises RetryableStatus or one of callback_wire.RETRYABLE_ERRORS for what is worth another try."""
    runtime = get_runtime()
    config = config or callback_config(runtime.settings)
    with runtime.sessions() as session:
        document = session.get(Document, document_id)
        if document is None:
            log.info("callback for document %s: the document is gone", document_id)
            return "gone"
        if not document.callback_url:
            return "no_callback"
        url = document.callback_url
        body = document_body(document)
    try:
        destination = check_destination(url, config)
    except RefusedDestination:
        log.warning("callback for document %s refused: its URL is not a public http(s) address", document_id)
        return "refused"
    answer = post(destination, body, signed_headers(config.secret, body), config.timeout_s)
    status = answer.status
    if 200 <= status < 300:
        log.info("callback for document %s delivered: HTTP %d", document_id, status)
        return "delivered"
    if status >= 500 or status == 429:
        raise RetryableStatus(status, answer.retry_after_s)
    log.warning("callback for document %s rejected: HTTP %d (not retried)", document_id, status)
    return "rejected"


def backoff_s(retries: int) -> float:
    """Seconds before try `retries + 2` (after `retries + 1` failed ones)."""
    return BACKOFF_BASE_S * 2**retries * random.uniform(1 - BACKOFF_JITTER, 1 + BACKOFF_JITTER)


def send_callback_task(self: Task, document_id: str) -> str:
    try:
        return deliver(document_id)
    except (RetryableStatus, *RETRYABLE_ERRORS) as error:
        what = f"HTTP {error.status}" if isinstance(error, RetryableStatus) else type(error).__name__
        tries = self.request.retries + 1
        if tries >= MAX_TRIES:
            log.warning("callback for document %s: %s; gave up after %d tries", document_id, what, tries)
            return "gave_up"
        delay = backoff_s(self.request.retries)
        if isinstance(error, RetryableStatus) and error.retry_after_s:
            delay = max(delay, error.retry_after_s)
        log.info("callback for document %s: %s; try %d in %.0f s", document_id, what, tries + 1, delay)
        raise self.retry(countdown=delay, max_retries=MAX_TRIES - 1) from None


def register_callback_task(app: Celery) -> None:
    # its own retries (HTTP failures, backoff with the endpoint's Retry-After), not RETRY_POLICY's
    register_task(
        app,
        CALLBACK_TASK,
        send_callback_task,
        limits=TASK_LIMITS_S,
        queue=CALLBACK_QUEUE,
        autoretry_for=(),
        max_retries=MAX_TRIES - 1,
    )


# --- the hook ---------------------------------------------------------------------------------------


def schedule_callback(session: Session, document_id: str, *, app: Celery | None = None) -> None:
    """Called right after a document's final status is committed: queues its callback if it has a
    callback_url. Never raises (the status is stored; a callback lost to a broker fault is logged)."""
    try:
        idle = not session.in_transaction()
        document = session.get(Document, document_id)  # usually in the session already: no query
        url = document.callback_url if document is not None else None
        if idle and session.in_transaction():
            session.commit()  # end the read it took: no idle transaction while a model runs
        if not url:
            return
        app_or_default(app).send_task(CALLBACK_TASK, args=[document_id], queue=CALLBACK_QUEUE)
    except Exception:
        log.exception("could not queue the callback for document %s", document_id)
