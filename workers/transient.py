"""Which failures are worth retrying: the database or broker briefly away, the GPU out of memory."""

from __future__ import annotations

import sys
from typing import Any

from kombu.exceptions import OperationalError as BrokerOperationalError
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.exc import OperationalError as DatabaseOperationalError

from workers.dispatch import BrokerUnavailable

# faults of the surroundings, not of the document: retried with backoff, a bounded number of times
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    DatabaseOperationalError,
    DisconnectionError,
    BrokerOperationalError,
    # a message the broker could not take (workers.dispatch): already a BrokerOperationalError, named
    # here because the broker client's own errors while it reconnects are not (issue #4)
    BrokerUnavailable,
    ConnectionError,
)
# how a task retries a transient failure: bounded, with growing, jittered delays (no retry storm)
RETRY_POLICY: dict[str, Any] = {
    "autoretry_for": TRANSIENT_ERRORS,
    "max_retries": 5,
    "retry_backoff": 2,
    "retry_backoff_max": 120,
    "retry_jitter": True,
}
DEFAULT_MAX_TILES = 6  # both published checkpoints' max_dynamic_patch


def is_out_of_memory(error: BaseException) -> bool:
    # torch is only in the process if a model ran, and only a model can run out of GPU memory
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(error, torch.cuda.OutOfMemoryError)


def free_gpu_memory() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def fewer_tiles(max_tiles: int | None) -> int | None:
    """The tile budget for a retry after running out of memory: half, down to one; None when already one."""
    current = max_tiles or DEFAULT_MAX_TILES
    return current // 2 if current > 1 else None
