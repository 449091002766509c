"""Dependencies shared by the routes: settings, a database session, the caller's owner,
and the submission rate.

The rate is a per-key limit on submissions (``POST /v1/jobs``, ``POST /v1/sweeps``): a
token bucket per API key, held in the API process, ``LEAP_SUBMIT_RATE_PER_MINUTE`` tokens
refilled continuously, one taken per submission. Several API processes (uvicorn workers,
replicas) each keep their own buckets, so the service-wide rate is at most that many times
the setting; a shared counter (Redis) is not worth a network round trip per POST for a
limit meant to stop runaway scripts, not to meter usage. It is checked after
authentication and before the body is validated: a script looping on an invalid spec
costs the server validation (and a sweep's expansion) too, so refused bodies count as
well.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from api.schemas.common import Problem
from jobs.db import session_factory
from jobs.keys import hash_token, owner_of
from jobs.settings import Settings

#: The 401 every route behind :func:`current_owner` may answer, declared in the OpenAPI
#: schema so that clients (and the schema fuzzer) know it is part of the contract.
UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "missing, invalid or revoked API key"}
}

#: What a submission (a POST with a body) may answer besides its own outcomes: a body that
#: is not decodable JSON (FastAPI's 400), too large, a reused Idempotency-Key, the rate.
SUBMIT_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "the body could not be parsed (not UTF-8 JSON)"},
    409: {"model": Problem, "description": "Idempotency-Key already used with another body"},
    413: {"model": Problem, "description": "body larger than LEAP_MAX_BODY_BYTES"},
    429: {
        "model": Problem,
        "description": "submitting too fast, or LEAP_MAX_QUEUED_PER_OWNER queued jobs already",
    },
}

bearer = HTTPBearer(auto_error=False, description="an API key from `leap admin create-key`")

#: Seconds a validated key is trusted without a database read; revocation takes this long.
KEY_CACHE_SECONDS = 30.0
_key_cache: dict[str, tuple[str, float]] = {}


# The dependencies below are ``async def`` although none of them awaits the database on
# its common path: FastAPI runs a plain ``def`` dependency on the thread pool, one round
# trip through it (a hand-off to a thread and back to the event loop) per dependency and
# request, which cost more than everything else a GET did. Only the endpoint itself (and
# what must touch the database: a key not in the cache, closing a session that still
# holds a connection) goes to the pool.


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_session(settings: SettingsDep) -> AsyncIterator[Session]:
    """A session for the request. Making one connects to nothing (the pool is used at its
    first query), so it is made on the event loop; closing one that still holds a
    connection rolls it back on the server, so that is done on the thread pool."""
    session = session_factory(settings.database_url)()
    try:
        yield session
    finally:
        if session.in_transaction():
            await run_in_threadpool(session.close)
        else:
            session.close()


SessionDep = Annotated[Session, Depends(get_session)]


async def get_sessions(settings: SettingsDep) -> sessionmaker[Session]:
    """The session factory, for the busiest routes (read a job, submit one): they open,
    use and close their session inside their own trip to the thread pool (``with
    sessions() as session``), which spares them the generator dependency's enter and
    exit and a second trip to close it."""
    return session_factory(settings.database_url)


SessionsDep = Annotated[sessionmaker[Session], Depends(get_sessions)]


def _owner_of(sessions: sessionmaker[Session], token: str) -> str | None:
    with sessions() as session:
        return owner_of(session, token)


async def current_owner(
    sessions: SessionsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str:
    """The owner of the presented key. A key seen valid in the last
    :data:`KEY_CACHE_SECONDS` is answered from memory; otherwise it is looked up (by
    prefix, hash compared) on the thread pool, with a session of its own."""
    unauthorized = HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        "missing or invalid API key (Authorization: Bearer <key>)",
        headers={"WWW-Authenticate": "Bearer"},
    )
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise unauthorized
    digest = hash_token(credentials.credentials)
    cached = _key_cache.get(digest)
    if cached is not None and cached[1] > time.monotonic():
        return cached[0]
    owner = await run_in_threadpool(_owner_of, sessions, credentials.credentials)
    if owner is None:
        raise unauthorized
    _key_cache[digest] = (owner, time.monotonic() + KEY_CACHE_SECONDS)
    return owner


CurrentOwner = Annotated[str, Depends(current_owner)]


class TokenBuckets:
    """One bucket per key, ``per_minute`` tokens deep, refilled at ``per_minute / 60`` a
    second. Thread-safe, so that it may be used from the thread pool as well as the event
    loop."""

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


async def submit_rate(
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
