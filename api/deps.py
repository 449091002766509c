"""Dependencies shared by the routers: settings, a database session, the caller's owner."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.schemas import Problem
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
    429: {"model": Problem, "description": "submitting too fast"},
}

bearer = HTTPBearer(auto_error=False, description="an API key from `leap admin create-key`")

#: Seconds a validated key is trusted without a database read; revocation takes this long.
KEY_CACHE_SECONDS = 30.0
_key_cache: dict[str, tuple[str, float]] = {}


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_session(settings: SettingsDep) -> Iterator[Session]:
    session = session_factory(settings.database_url)()
    try:
        yield session
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]


def current_owner(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str:
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
    owner = owner_of(session, credentials.credentials)
    if owner is None:
        raise unauthorized
    _key_cache[digest] = (owner, time.monotonic() + KEY_CACHE_SECONDS)
    return owner


CurrentOwner = Annotated[str, Depends(current_owner)]
