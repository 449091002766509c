"""The job state machine: the only code that changes ``Job.status``.

::

    queued ──> running ──> succeeded | failed
      │          │  └────> cancelling ──> cancelled
      └──> cancelled        (a running job whose worker vanished goes back to queued)
    failed | cancelled ──> queued            (retry: a new attempt)

Every change is checked against :data:`ALLOWED`, stamps the row's timestamps and adds a
``state`` event in the caller's transaction, so the row and its history commit together.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from jobs.models import Job, JobEvent, JobStatus, new_id, utcnow

ALLOWED: dict[JobStatus | None, frozenset[JobStatus]] = {
    None: frozenset({JobStatus.queued}),
    JobStatus.queued: frozenset({JobStatus.running, JobStatus.cancelled}),
    JobStatus.running: frozenset(
        {JobStatus.succeeded, JobStatus.failed, JobStatus.cancelling, JobStatus.queued}
    ),
    JobStatus.cancelling: frozenset({JobStatus.cancelled, JobStatus.failed, JobStatus.succeeded}),
    JobStatus.succeeded: frozenset(),
    JobStatus.failed: frozenset({JobStatus.queued}),
    JobStatus.cancelled: frozenset({JobStatus.queued}),
}


class IllegalTransition(ValueError):
    """A state change that the machine does not allow, e.g. cancelling a finished job."""

    def __init__(self, job_id: str, current: str | None, target: str) -> None:
        super().__init__(f"job {job_id} is {current}; it cannot become {target}")
        self.current = current
        self.target = target


def can_move(current: str | None, target: str) -> bool:
    return JobStatus(target) in ALLOWED[JobStatus(current) if current else None]


def transition(
    session: Session, job: Job, target: JobStatus, message: str = "", **fields: Any
) -> Job:
    """Move ``job`` to ``target`` (raising :class:`IllegalTransition` if not allowed), set
    ``fields`` on the row and record the event. The caller commits; lock the row first
    (``SELECT … FOR UPDATE``) when another process may change it concurrently."""
    current = job.status  # None for a job being created
    if not can_move(current, target):
        raise IllegalTransition(job.id, current, target)
    now = utcnow()
    job.status = JobStatus(target).value
    job.updated_at = now
    if target == JobStatus.running:
        job.started_at = now
        job.heartbeat_at = now
        job.error = None
    elif target == JobStatus.queued and current is not None:
        job.finished_at = None
    elif target in (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled):
        job.finished_at = now
        job.eta_seconds = None
    for name, value in fields.items():
        setattr(job, name, value)
    if current is None:
        job.id = job.id or new_id()  # known before the insert: row and event flush together
        job.attempt = job.attempt or 1
        job.created_at = job.created_at or now
        session.add(job)
    session.add(
        JobEvent(
            job_id=job.id,
            kind="state",
            from_status=current,
            to_status=job.status,
            attempt=job.attempt,
            message=message,
            at=now,
        )
    )
    return job


def log(session: Session, job: Job, message: str) -> None:
    """Add a log line to the job's events (no state change)."""
    session.add(
        JobEvent(job_id=job.id, kind="log", attempt=job.attempt, message=message, at=utcnow())
    )
