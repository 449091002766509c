"""Dependencies shared by the routers: settings, a database session, the caller's owner."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from jobs.db import session_factory
from jobs.keys import hash_token, owner_of
from jobs.settings import Settings

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
    unauthorized = HTTPException(status.HTTP_401_UNAUTHORIZED,
                                 "missing or invalid API key (Authorization: Bearer <key>)",
                                 headers={"WWW-Authenticate": "Bearer"})
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
