"""The FastAPI application: ``uvicorn api.main:app`` (or :func:`create_app` in tests).

The schema must already be migrated (``python -m jobs.migrate``): the app never creates
tables itself.
"""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from api import outage
from api.admission import AdmissionLimit
from api.body_limit import BodySizeLimit
from api.routers import health, jobs, sweeps
from jobs.settings import Settings, get_settings


class ASCIIJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped. A 422 echoes what the client sent, and
    a JSON string may hold an unpaired surrogate (``"\\ud800"``) that has no UTF-8 form:
    escaped, it goes back as the client wrote it instead of failing to encode."""

    def render(self, content: Any) -> bytes:
        return json.dumps(
            content, ensure_ascii=True, allow_nan=False, separators=(",", ":")
        ).encode("ascii")


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


def create_app(settings: Settings | None = None) -> FastAPI:
    app = FastAPI(
        title="LEAP training service",
        description="Submit LEAP training jobs and sweeps, follow them, find "
        "their MLflow runs, read a sweep's results table.",
        version="0.1.0",
    )
    settings = app.state.settings = settings or get_settings()
    # Closed by default: a browser on another origin gets no CORS headers unless its
    # origin is listed. Bearer keys, not cookies, so credentials are never allowed.
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
        )
    app.add_middleware(
        AdmissionLimit,
        limit=settings.max_concurrent_requests,
        wait_seconds=settings.admission_wait_seconds,
    )
    # Added last, so it runs first: an oversized body is refused before anything reads it
    # (or waits for a turn).
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    outage.install(app)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(sweeps.router)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        problems = _field_errors(error)
        summary = "; ".join(f"{p['path']}: {p['message']}" for p in problems)
        body = {"detail": summary, "errors": problems}
        return ASCIIJSONResponse(status_code=422, content=jsonable_encoder(body))

    return app


def __getattr__(name: str) -> Any:
    # ``uvicorn api.main:app`` builds the app on first access, after the environment is set.
    if name == "app":
        return create_app()
    raise AttributeError(name)
