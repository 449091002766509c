"""The FastAPI application: ``uvicorn api.main:app`` (or :func:`create_app` in tests).

The schema must already be migrated (``python -m jobs.migrate``): the app never creates
tables itself.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api import docs, errors
from api.middleware.admission import AdmissionLimit
from api.middleware.body_limit import BodySizeLimit
from api.routes import health, jobs, sweeps
from jobs.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    app = FastAPI(
        title="LEAP training service",
        description="Submit LEAP training jobs and sweeps, follow them, find "
        "their MLflow runs, read a sweep's results table.",
        version="0.1.0",
        docs_url=None,
        redoc_url=None,
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
    errors.install(app)
    docs.install(app)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(sweeps.router)

    return app


def __getattr__(name: str) -> Any:
    # ``uvicorn api.main:app`` builds the app on first access, after the environment is set.
    if name == "app":
        return create_app()
    raise AttributeError(name)
