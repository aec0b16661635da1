"""What routes receive by injection: the per-app state, a database session, the blob store and the
caller's API key (authenticated and rate limited)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.errors import ApiError
from api.keys import verify_key
from api.metrics import Metrics
from api.ratelimit import TokenBuckets, retry_after_header
from bayou.intake.sending import Enqueue
from bayou.settings import Settings
from storage.blobs import BlobStore
from storage.models import ApiKey

log = logging.getLogger(__name__)



@dataclass
class AppState:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    blobs: BlobStore
    batch_root: Path
    enqueue: Enqueue
    buckets: TokenBuckets
    metrics: Metrics
    # True when documents go to the Celery workers (the default enqueue): batch walks go there too; an
    # app given an enqueue of its own (tests, a program embedding the API) walks batches in-process
    workers: bool = True


def get_state(request: Request) -> AppState:
    return request.app.state.bayou


State = Annotated[AppState, Depends(get_state)]


def get_session(state: State) -> Iterator[Session]:
    with state.sessions() as session:
        yield session


def get_blobs(state: State) -> BlobStore:
    return state.blobs


SessionDep = Annotated[Session, Depends(get_session)]
BlobsDep = Annotated[BlobStore, Depends(get_blobs)]

# auto_error off: a missing header must get our 401 and error shape, not FastAPI's 403
_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer bayou_…` (see `bayou apikey`)")


def current_key(
    state: State,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiKey:
    if credentials is None:
        raise ApiError(401, "unauthorized", "an API key is required", headers={"WWW-Authenticate": "Bearer"})
    key = verify_key(session, credentials.credentials)
    if key is None:
        raise ApiError(
            401, "unauthorized", "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"}
        )
    wait_s = state.buckets.take(key.prefix)
    if wait_s > 0:
        raise ApiError(
            429,
            "rate_limited",
            "too many requests for this API key",
            headers={"Retry-After": retry_after_header(wait_s)},
        )
    return key


CurrentKey = Annotated[ApiKey, Depends(current_key)]


def actor(key: ApiKey) -> str:
    return f"apikey:{key.name}"
