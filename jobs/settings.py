"""One settings class for the API, the workers and Alembic, read from ``LEAP_*`` variables.

The defaults are the embedded stack, which needs no server: SQLite under ``$LEAP_HOME``
for jobs, kombu's SQLAlchemy transport on SQLite as the broker, and the MLflow store the
local trainer already uses. Production points the same names at PostgreSQL, Redis and an
MLflow server.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from leap_core.home import leap_home
from leap_core.tracking.store import default_tracking_uri

#: Values that mean "somebody copied the example env file and forgot to fill it in".
PLACEHOLDERS = {"changeme", "change-me", "secret", "password", "please-change"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEAP_", extra="ignore")

    database_url: str = Field(
        default_factory=lambda: f"sqlite:///{leap_home() / 'service.db'}",
        description="SQLAlchemy URL of the job database",
    )
    broker_url: str = Field(
        default_factory=lambda: f"sqla+sqlite:///{leap_home() / 'broker.db'}",
        description="Celery broker (redis://… in production)",
    )
    mlflow_tracking_uri: str = Field(
        default_factory=lambda: default_tracking_uri(),
        description="where workers log runs",
    )
    mlflow_ui_url: str = Field(
        "http://127.0.0.1:5000", description="MLflow UI base address, for links in job replies"
    )
    runs_dir: Path = Field(
        default_factory=lambda: leap_home() / "jobs",
        description="run folders (checkpoints) of service jobs",
    )
    data_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=lambda: [leap_home() / "data"],
        description="dataset roots must resolve inside one of these (LEAP_DATA_ROOTS=/a:/b)",
    )
    queue: str = Field("gpu", description="Celery queue the train task goes to")
    max_devices_per_job: int = Field(
        1,
        ge=1,
        description="the largest resources.devices a job may ask for: the devices of the "
        "largest worker (LEAP_MAX_DEVICES_PER_JOB)",
    )
    heartbeat_seconds: float = Field(1.0, gt=0, description="min seconds between row writes")
    lease_seconds: float = Field(
        120.0,
        gt=0,
        description="a running job whose heartbeat is "
        "older than this is taken over by a redelivered message",
    )
    max_sweep_cells: int = Field(
        500, ge=1, description="most cells (jobs) one POST /v1/sweeps may create"
    )
    max_queued_per_owner: int | None = Field(
        None,
        ge=1,
        description="most queued jobs one owner may have; a submission (a job, or a sweep's "
        "cells) past it is refused with 429",
    )
    max_running_per_owner: int | None = Field(
        None,
        ge=1,
        description="most jobs of one owner that run at once; the owner's other queued jobs "
        "are held (their position says so) until one of its jobs ends",
    )
    heartbeat_timeout_seconds: float | None = Field(
        None,
        gt=0,
        description="the reaper requeues a running job whose heartbeat is older "
        "than this; default 10 × LEAP_HEARTBEAT_SECONDS, at least 60 s",
    )
    max_attempts: int = Field(
        3,
        ge=1,
        description="attempts a job gets before the reaper fails it instead of requeueing it",
    )
    db_retry_seconds: float = Field(
        600.0,
        ge=0,
        description="how long a worker retries a "
        "state write (lease, progress log, final status) while "
        "the database is unreachable, with backoff",
    )
    tracking_retry_seconds: float = Field(
        600.0,
        ge=0,
        description="how long a worker retries the tracking store (MLflow) while it is "
        "unreachable, with backoff, keeping the metrics logged meanwhile; past this the "
        "job is requeued as a new attempt",
    )
    redispatch_seconds: float = Field(
        600.0,
        gt=0,
        description="the reconciler re-sends a queued job whose last dispatch is older than this",
    )
    maintenance_seconds: float = Field(
        30.0, gt=0, description="seconds between passes of python -m jobs.maintenance"
    )
    max_body_bytes: int = Field(
        1024 * 1024,
        ge=1,
        description="largest request body the API reads; a larger one is a 413 before any parsing",
    )
    submit_rate_per_minute: int = Field(
        120,
        ge=1,
        description="POST /v1/jobs and /v1/sweeps per API key and minute, per API process",
    )
    max_concurrent_requests: int = Field(
        32,
        ge=1,
        le=40,
        description="requests one API "
        "process serves at once; more wait (below the "
        "database pool's 40 connections)",
    )
    admission_wait_seconds: float = Field(
        30.0, gt=0, description="longest a request waits for its turn before a 503 with Retry-After"
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="origins allowed cross-origin calls "
        "(LEAP_CORS_ORIGINS=https://a.example,https://b.example); none by default",
    )

    @field_validator("data_roots", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        # LEAP_DATA_ROOTS=/data:/scratch (os.pathsep) as well as a JSON list.
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [part for part in value.split(os.pathsep) if part]
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        # LEAP_CORS_ORIGINS=https://a.example,https://b.example as well as a JSON list.
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("database_url", "broker_url", "mlflow_tracking_uri")
    @classmethod
    def _no_placeholder(cls, value: str) -> str:
        for word in PLACEHOLDERS:
            if f":{word}@" in value:
                raise ValueError(f"contains the placeholder password {word!r}; set a real one")
        return value

    def heartbeat_timeout(self) -> float:
        """Seconds without a heartbeat after which a running job's worker counts as lost.
        Ten missed beats, and never under a minute: the heartbeat thread of a job in a
        long evaluation beats only every 10 s, and a false alarm trains a job twice."""
        if self.heartbeat_timeout_seconds is not None:
            return self.heartbeat_timeout_seconds
        return max(60.0, 10 * self.heartbeat_seconds)

    def resolved_data_roots(self) -> list[Path]:
        return [Path(root).resolve() for root in self.data_roots]


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
