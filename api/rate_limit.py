"""A per-key limit on submissions (``POST /v1/jobs``, ``POST /v1/sweeps``).

A token bucket per API key, held in the API process: ``LEAP_SUBMIT_RATE_PER_MINUTE``
tokens, refilled continuously, one taken per submission. Several API processes (uvicorn
workers, replicas) each keep their own buckets, so the service-wide rate is at most that
many times the setting; a shared counter (Redis) is not worth a network round trip per
POST for a limit meant to stop runaway scripts, not to meter usage.

The limit is checked after authentication and before the body is validated: a script
looping on an invalid spec costs the server validation (and a sweep's expansion) too, so
refused bodies count as well.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials

from api.deps import CurrentOwner, SettingsDep, bearer
from jobs.keys import hash_token


class TokenBuckets:
    """One bucket per key, ``per_minute`` tokens deep, refilled at ``per_minute / 60`` a
    second. Thread-safe: FastAPI runs sync dependencies in a thread pool."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.refill = per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Take a token for ``key``: 0.0 when allowed, else the seconds until one is free."""
        now = time.monotonic()
        with self._lock:
            tokens, then = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - then) * self.refill)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.refill


def _buckets(request: Request, per_minute: int) -> TokenBuckets:
    buckets = getattr(request.app.state, "submit_buckets", None)
    if buckets is None or buckets.capacity != per_minute:
        buckets = request.app.state.submit_buckets = TokenBuckets(per_minute)
    return buckets


def submit_rate(
    request: Request,
    settings: SettingsDep,
    owner: CurrentOwner,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """429 with ``Retry-After`` once the caller's key has used its submissions."""
    # CurrentOwner has already refused a request without a valid key.
    key = hash_token(credentials.credentials) if credentials else f"owner:{owner}"
    per_minute = settings.submit_rate_per_minute
    wait = _buckets(request, per_minute).take(key)
    if wait > 0:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"more than LEAP_SUBMIT_RATE_PER_MINUTE={per_minute} submissions a minute with "
            f"this API key; retry in {math.ceil(wait)} s",
            headers={"Retry-After": str(math.ceil(wait))},
        )


SubmitRate = Depends(submit_rate)
