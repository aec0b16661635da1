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
from api.keygate import STATE_NAME, ApiCaller
from api.metrics import Metrics
from api.ratelimit import TokenBuckets
from bayou.intake.sending import Enqueue
from bayou.settings import Settings
from storage.blobs import BlobStore

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


async def current_key(
    request: Request,
    # declared for the OpenAPI document (the security scheme); the key itself was checked by ApiKeyGate
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiCaller:
    """The caller ApiKeyGate authenticated (and rate limited) before the body was read. async: nothing
    here blocks, so no worker thread is taken for it."""
    caller = getattr(request.state, STATE_NAME, None)
    if not isinstance(caller, ApiCaller):
        # an app put together without the gate: refuse rather than serve unauthenticated
        raise ApiError(401, "unauthorized", "an API key is required", headers={"WWW-Authenticate": "Bearer"})
    return caller


CurrentKey = Annotated[ApiCaller, Depends(current_key)]


def actor(key: ApiCaller) -> str:
    return f"apikey:{key.name}"
