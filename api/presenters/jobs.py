"""From a job row to its public representation."""

from __future__ import annotations

from typing import Any

from api.schemas.jobs import (
    EventPublic,
    JobDetail,
    JobPublic,
    Links,
    MLflowLink,
    Progress,
    QueuePlace,
)
from jobs.fair_queue import Place
from jobs.models import Job, JobEvent
from jobs.settings import Settings
from leap_core.tracking.links import run_link


def mlflow_url(settings: Settings, job: Job) -> str | None:
    if job.mlflow_run_id is None:
        return None
    return run_link(settings.mlflow_ui_url, job.mlflow_run_id, job.mlflow_experiment_id)


def job_public(job: Job, settings: Settings, place: Place | None = None) -> JobPublic:
    """A job as lists show it."""
    return JobPublic(**_fields(job, settings, place))


def job_detail(job: Job, settings: Settings, place: Place | None = None) -> JobDetail:
    """A job as its own endpoints show it: the public fields and the spec."""
    return JobDetail(**_fields(job, settings, place), spec=job.spec)


def _fields(job: Job, settings: Settings, place: Place | None) -> dict[str, Any]:
    base = f"/v1/jobs/{job.id}"
    fraction = (
        job.global_step / job.total_steps
        if job.global_step is not None and job.total_steps
        else None
    )
    fields: dict[str, Any] = dict(
        id=job.id,
        name=job.name,
        status=job.status,
        tags=job.tags or [],
        priority=job.priority,
        attempt=job.attempt,
        preemptions=job.preemptions or 0,
        worker=job.worker,
        created_at=job.created_at,
        updated_at=job.updated_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        heartbeat_at=job.heartbeat_at,
        progress=Progress(
            epoch=job.epoch,
            epochs=job.epochs,
            step=job.step,
            global_step=job.global_step,
            total_steps=job.total_steps,
            fraction=fraction,
            eta_seconds=job.eta_seconds,
        ),
        metrics={k: float(v) for k, v in (job.metrics or {}).items()},
        mlflow=MLflowLink(
            run_id=job.mlflow_run_id,
            experiment_id=job.mlflow_experiment_id,
            url=mlflow_url(settings, job),
        ),
        queue=None if place is None else QueuePlace(position=place.position, held=place.held),
        error=job.error,
        links=Links(
            self=base, events=f"{base}/events", cancel=f"{base}/cancel", retry=f"{base}/retry"
        ),
    )
    return fields


def event_public(event: JobEvent) -> EventPublic:
    return EventPublic(
        id=event.id,
        at=event.at,
        kind=event.kind,
        from_status=event.from_status,
        to_status=event.to_status,
        attempt=event.attempt,
        message=event.message,
    )
