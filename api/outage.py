"""An unreachable database is a 503 the client can retry, not a 500 with a traceback.

Connection failures reach the API as SQLAlchemy's ``OperationalError`` or
``InterfaceError`` (psycopg's connection errors wrapped), or as a ``DBAPIError`` whose
connection SQLAlchemy has just invalidated (a server restart cutting the pool's
connections). Any other database error is a bug and stays a 500.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

log = logging.getLogger("api.outage")

#: Seconds a client is told to wait before retrying while the database is away.
RETRY_AFTER_SECONDS = 5


def is_outage(error: BaseException) -> bool:
    """Whether ``error`` means "the database cannot be reached" rather than a bad query."""
    if isinstance(error, OperationalError | InterfaceError):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


def unavailable(error: BaseException) -> JSONResponse:
    """The 503 reply; the error's class is named, its message (host, port) is not."""
    kind = type(getattr(error, "orig", None) or error).__name__
    return JSONResponse(
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        content={"detail": f"database unavailable ({kind}); retry in {RETRY_AFTER_SECONDS} s"},
    )


def install(app: FastAPI) -> None:
    """Register the handlers that turn database outages (and an exhausted connection pool)
    into 503s."""

    @app.exception_handler(PoolTimeout)
    async def pool_exhausted(request: Request, error: PoolTimeout) -> JSONResponse:
        log.warning(
            "%s %s: no database connection free: %s", request.method, request.url.path, error
        )
        return JSONResponse(
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            content={
                "detail": f"database busy (no pooled connection free); retry in "
                f"{RETRY_AFTER_SECONDS} s"
            },
        )

    @app.exception_handler(DBAPIError)
    async def database_error(request: Request, error: DBAPIError) -> JSONResponse:
        if not is_outage(error):
            raise error
        log.warning(
            "%s %s: database unavailable: %s",
            request.method,
            request.url.path,
            str(error.orig or error).strip(),
        )
        return unavailable(error)
