"""Every error the API answers, in one shape: ``{"detail": "..."}`` (a 422 adds ``errors``,
one entry per field), with ``Retry-After`` wherever waiting helps.

The ``Retry-After`` policy is :data:`RETRY_AFTER_SECONDS`: how long a client should wait
for each reason it may be told to come back. A submission over its rate is the exception:
it is told exactly when its next token is free.

Database outages are 503s the client can retry, not 500s with a traceback. Connection
failures reach the API as SQLAlchemy's ``OperationalError`` or ``InterfaceError`` (psycopg's
connection errors wrapped), or as a ``DBAPIError`` whose connection SQLAlchemy has just
invalidated (a server restart cutting the pool's connections). Any other database error is
a bug and stays a 500.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from jobs.submission import QueueFull, Refused

log = logging.getLogger("api.errors")

#: Seconds a client is told to wait, by why it is told to come back: the database is
#: unreachable or its pool exhausted (restarts take seconds), or more requests are in
#: progress than the API admits (they finish in well under a second).
RETRY_AFTER_SECONDS: dict[Literal["database", "busy"], int] = {"database": 5, "busy": 2}


class ASCIIJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped. A 422 echoes what the client sent, and
    a JSON string may hold an unpaired surrogate (``"\\ud800"``) that has no UTF-8 form:
    escaped, it goes back as the client wrote it instead of failing to encode."""

    def render(self, content: Any) -> bytes:
        return json.dumps(
            content, ensure_ascii=True, allow_nan=False, separators=(",", ":")
        ).encode("ascii")


def problem(
    status: int,
    detail: str,
    retry_after: int | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """The API's error reply. A Starlette response is an ASGI app, so the middleware
    answers with this too."""
    headers = dict(headers or {})
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    content = jsonable_encoder({"detail": detail, **extra})
    return ASCIIJSONResponse(status_code=status, content=content, headers=headers)


_OMITTED = object()


def _plain(value: Any) -> bool:
    return (
        value is None
        or isinstance(value, str | int | bool)
        or (isinstance(value, float) and math.isfinite(value))
    )


def _shown_input(value: Any) -> Any:
    """The rejected value as the error shows it: scalars and flat lists as sent, NaN and
    ±Infinity as text (JSON has no such numbers), anything nested left out (it can be as
    deep as the body, and the path already says where it is)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if _plain(value):
        return value
    if isinstance(value, list | tuple) and all(_plain(item) for item in value):
        return list(value)
    return _OMITTED


def _field_errors(error: RequestValidationError) -> list[dict]:
    """Each problem as ``{path, message, input}`` with a dotted path into the body."""
    problems = []
    for item in error.errors():
        loc = [str(part) for part in item.get("loc", ())]
        if loc and loc[0] == "body":
            loc = loc[1:]
        message = str(item.get("msg", "")).removeprefix("Value error, ")
        entry = {"path": ".".join(loc) or "body", "message": message, "type": item.get("type")}
        shown = _shown_input(item["input"]) if "input" in item else _OMITTED
        if shown is not _OMITTED:
            entry["input"] = shown
        problems.append(entry)
    return problems


def as_validation_error(refused: Refused) -> RequestValidationError:
    """The domain's refusal in FastAPI's form, so it is answered like a schema error."""
    return RequestValidationError(
        [
            {
                "type": found.kind,
                "loc": ("body", *found.loc),
                "msg": found.message,
                **({"input": found.value} if found.value is not None else {}),
            }
            for found in refused.problems
        ]
    )


def invalid_body(error: RequestValidationError) -> JSONResponse:
    """The 422: a one-line summary and each field's problem."""
    problems = _field_errors(error)
    summary = "; ".join(f"{p['path']}: {p['message']}" for p in problems)
    return problem(422, summary, errors=problems)


def is_outage(error: BaseException) -> bool:
    """Whether ``error`` means "the database cannot be reached" rather than a bad query."""
    if isinstance(error, OperationalError | InterfaceError):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


def unavailable(error: BaseException) -> JSONResponse:
    """The 503 reply; the error's class is named, its message (host, port) is not."""
    kind = type(getattr(error, "orig", None) or error).__name__
    wait = RETRY_AFTER_SECONDS["database"]
    return problem(503, f"database unavailable ({kind}); retry in {wait} s", retry_after=wait)


def install(app: FastAPI) -> None:
    """Register the handlers: refused and invalid bodies as 422s, database outages (and an
    exhausted connection pool) as 503s."""

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        return invalid_body(error)

    @app.exception_handler(Refused)
    async def refused(_request: Request, error: Refused) -> JSONResponse:
        return invalid_body(as_validation_error(error))

    @app.exception_handler(QueueFull)
    async def queue_full(_request: Request, error: QueueFull) -> JSONResponse:
        return problem(429, str(error))

    @app.exception_handler(PoolTimeout)
    async def pool_exhausted(request: Request, error: PoolTimeout) -> JSONResponse:
        log.warning(
            "%s %s: no database connection free: %s", request.method, request.url.path, error
        )
        wait = RETRY_AFTER_SECONDS["database"]
        return problem(
            503,
            f"database busy (no pooled connection free); retry in {wait} s",
            retry_after=wait,
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
