"""The FastAPI application factory: `create_app(settings)` builds an app with its own database engine,
blob store, rate limiter and metrics, so tests (and several apps in one process) never share state."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.bodylimit import BodyLimitMiddleware
from api.deps import AppState, Enqueue
from api.errors import install_error_handlers
from api.headers import SecurityHeaders
from api.keygate import ApiKeyGate
from api.logcontext import RequestContextMiddleware, bind_path_document_id
from api.metrics import Metrics
from api.ratelimit import RateLimit, TokenBuckets
from api.review import routes as review_routes
from api.routes import batches, documents, health
from bayou.intake import MIB
from bayou.settings import Settings, get_settings
from storage.blobs import BlobStore
from storage.db import make_engine, make_session_factory
from storage.migrate import ensure_schema
from workers.dispatch import enqueue as workers_enqueue

# room for the multipart framing and the form fields around the file itself
MULTIPART_SLACK_BYTES = 64 * 1024
# bodies of every route that is not an upload: JSON requests, the review UI's forms
SMALL_BODY_BYTES = 1 * MIB
# the sign-in form: an email, a password, a token and a path
LOGIN_BODY_BYTES = 16 * 1024
UPLOAD_ROUTES = {("POST", "/v1/documents")}
DEFAULT_BATCH_FOLDER = "inbox"

DESCRIPTION = """\
Document extraction (receipts, US driver's licences, US checks) with the H2OVL-Mississippi models.

Every `/v1` route needs `Authorization: Bearer <api key>` (`bayou apikey create --name NAME`).
Errors are always `{"error": {"code": "...", "message": "..."}}`, `code` a stable snake_case word.
"""


def create_app(
    settings: Settings | None = None,
    *,
    batch_root: Path | None = None,
    enqueue: Enqueue | None = None,
    rate_limit: RateLimit | None = None,
) -> FastAPI:
    """`batch_root`: the folder POST /v1/batches may read below (default `<data_dir>/inbox`).
    `enqueue(document_id, *, model, doc_type)`: hands a new document to the workers (default
    `workers.enqueue`)."""
    settings = settings or get_settings()
    engine = make_engine(settings.database_url)
    # the embedded SQLite database is migrated on the spot; PostgreSQL behind head is refused
    ensure_schema(engine, auto=True)
    root = Path(batch_root or settings.batch_root or settings.data_dir / DEFAULT_BATCH_FOLDER)
    root.mkdir(parents=True, exist_ok=True)
    state = AppState(
        settings=settings,
        engine=engine,
        sessions=make_session_factory(engine),
        blobs=BlobStore.in_data_dir(settings.data_dir),
        batch_root=root,
        enqueue=enqueue or workers_enqueue,
        workers=enqueue is None or enqueue is workers_enqueue,
        buckets=TokenBuckets(rate_limit or RateLimit()),
        metrics=Metrics.for_app(settings, engine),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        engine.dispose()

    app = FastAPI(
        title="bayou",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        dependencies=[Depends(bind_path_document_id)],
    )
    app.state.bayou = state
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(documents.router)
    app.include_router(batches.router)
    app.include_router(review_routes.router)
    app.add_middleware(BodyLimitMiddleware, max_bytes=body_limits(settings))
    # outside the body limit and everything else that could read a body: /v1 is authenticated first
    app.add_middleware(ApiKeyGate, state=state)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(_RequestMetrics, metrics=state.metrics)
    # added last, so outermost: every line a request logs carries its id
    app.add_middleware(RequestContextMiddleware)
    return app


def body_limits(settings: Settings) -> Callable[[Scope], int]:
    """The body cap of a request: the upload cap for uploads, small ones for everything else."""
    upload = settings.max_upload_mb * MIB + MULTIPART_SLACK_BYTES

    def limit(scope: Scope) -> int:
        path = scope["path"].rstrip("/") or "/"
        if (scope["method"], path) in UPLOAD_ROUTES:
            return upload
        if path == "/review/login":
            return LOGIN_BODY_BYTES
        return SMALL_BODY_BYTES

    return limit


class _RequestMetrics:
    """Counts and times requests by route template (`/v1/documents/{document_id}`), never by raw path:
    ids in labels would grow the metric without bound."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
