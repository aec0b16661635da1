"""Liveness, readiness and metrics: no API key, so that orchestrators and scrapers need no secret."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from api.deps import State
from api.errors import ApiError
from api.schemas import Health, error_responses

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])

BROKER_TIMEOUT_S = 2.0


@router.get("/healthz", response_model=Health, summary="The process is up")
def healthz() -> Any:
    return Health()


@router.get(
    "/readyz",
    response_model=Health,
    summary="The database (and the broker, if one is configured) answer",
    responses=error_responses(503),
)
def readyz(state: State) -> Any:
    checks: dict[str, str] = {}
    try:
        with state.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        log.warning("readiness: database unreachable: %s", type(exc).__name__)
        raise ApiError(503, "database_unavailable", "the database does not answer") from exc
    checks["database"] = "ok"
    broker = state.settings.broker_url
    if broker:
        if not _broker_answers(broker):
            raise ApiError(503, "broker_unavailable", "the broker does not answer")
        checks["broker"] = "ok"
    return Health(checks=checks)


def _broker_answers(url: str) -> bool:
    if not url.startswith(("redis://", "rediss://")):
        # other brokers are not probed here; the workers report their own health
        return True
    import redis

    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=BROKER_TIMEOUT_S, socket_timeout=BROKER_TIMEOUT_S
        )
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception as exc:
        log.warning("readiness: broker unreachable: %s", type(exc).__name__)
        return False


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Text exposition format."}},
)
def metrics(state: State) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
