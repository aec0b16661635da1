"""A token bucket per API key, in this process. Several API processes each keep their own buckets, so
the effective limit is per process; that is enough to stop one runaway client from starving others."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimit:
    per_second: float = 20.0
    burst: int = 100


class TokenBuckets:
    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        if limit.per_second <= 0 or limit.burst < 1:
            raise ValueError("a rate limit needs a positive rate and a burst of at least 1")
        self.limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        # key -> (tokens, when they were counted)
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> float:
        """Takes one token for `key`: 0.0 if granted, else the seconds until one is available."""
        now = self._clock()
        with self._lock:
            tokens, then = self._buckets.get(key, (float(self.limit.burst), now))
            tokens = min(float(self.limit.burst), tokens + (now - then) * self.limit.per_second)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.limit.per_second


def retry_after_header(wait_s: float) -> str:
    # Retry-After takes whole seconds; rounding down would invite a retry that is refused again
    return str(max(1, math.ceil(wait_s)))
