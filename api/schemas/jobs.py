"""Request and reply bodies: ``JobCreate`` in, ``JobPublic`` out, kept apart from the
table so that the API's contract does not follow the schema's every change."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from leap_core.config import JobSpec

#: The largest event id: ``job_events.id`` is a signed 64-bit column.
MAX_EVENT_ID = 2**63 - 1


class JobCreate(JobSpec):
    """The JobSpec of ``leap train`` plus how the service files the job."""

    tags: list[str] = Field(
        default_factory=list,
        max_length=20,
        description="free labels; GET /v1/jobs?tag= filters on them",
    )
    priority: int = Field(5, ge=0, le=9, description="0-9, higher runs first")

    @staticmethod
    def training_spec(dumped: dict[str, Any]) -> dict[str, Any]:
        """The training spec alone (what ``leap train`` would read) out of this body's JSON
        dump: already validated as part of the body, so neither parsed nor dumped again."""
        return {key: value for key, value in dumped.items() if key not in ("tags", "priority")}


class Progress(BaseModel):
    epoch: int | None = Field(None, description="epochs completed")
    epochs: int | None = None
    step: int | None = Field(None, description="step within the current epoch")
    global_step: int | None = None
    total_steps: int | None = None
    fraction: float | None = Field(None, description="global_step / total_steps")
    eta_seconds: float | None = None


class MLflowLink(BaseModel):
    run_id: str | None
    experiment_id: str | None
    url: str | None = Field(description="the run in the MLflow UI's model-training view")


class Links(BaseModel):
    self: str
    events: str
    cancel: str
    retry: str


class QueuePlace(BaseModel):
    """Where a queued job stands in the fair queue (``jobs.fair_queue``)."""

    position: int = Field(
        description="queued jobs (of any owner, needing as many devices) that start before it"
    )
    held: str | None = Field(
        None, description="why it cannot start now although its turn may come (an owner limit)"
    )


class JobPublic(BaseModel):
    id: str
    name: str
    status: str
    tags: list[str]
    priority: int
    attempt: int
    preemptions: int = Field(
        0,
        description="attempts that ended in a preemption (checkpointed and requeued after a "
        "SIGTERM); LEAP_MAX_ATTEMPTS counts only the others",
    )
    worker: str | None = Field(
        None, description="the worker (host:pid) holding or last holding the job"
    )
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    progress: Progress
    metrics: dict[str, float]
    mlflow: MLflowLink
    queue: QueuePlace | None = Field(None, description="a queued job's place; null otherwise")
    error: str | None
    links: Links


class JobDetail(JobPublic):
    spec: dict[str, Any]


class JobPage(BaseModel):
    items: list[JobPublic]
    next_cursor: str | None


class EventPublic(BaseModel):
    id: int
    at: datetime
    kind: str
    from_status: str | None
    to_status: str | None
    attempt: int
    message: str


class EventPage(BaseModel):
    items: list[EventPublic]
    next_after: int = Field(description="pass as ?after= to read on")
