"""Recovery of jobs that a lost worker or a lost broker message left behind.

PostgreSQL is the source of truth; the broker only carries job ids. Two checks bring the
broker and the workers back in line with the rows:

* the **reaper** finds jobs in ``running`` or ``cancelling`` whose heartbeat stopped (the
  worker died, its machine went away, or its message was lost with Redis) and requeues
  them as a new attempt, fails them after ``LEAP_MAX_ATTEMPTS``, or finishes a
  cancellation that nobody is left to carry out;
* the **reconciler** finds ``queued`` jobs whose last dispatch is older than
  ``LEAP_REDISPATCH_SECONDS`` (Redis restarted empty, or the POST's dispatch failed) and
  names them for sending again.

These functions only change rows (through :mod:`jobs.states`) and say which jobs need a
message; the caller commits first and dispatches after, as the API does, so a worker
never reads a row that is not committed. A duplicate message is harmless: the worker's
lease takes only a queued job (or a running one whose heartbeat is stale).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from jobs.models import Job, JobStatus, utcnow
from jobs.settings import Settings
from jobs.states import transition


@dataclass
class Reaped:
    """What one reaper pass did, by job id. ``requeued`` jobs still need a message."""

    requeued: list[Job] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)


def _aware(stamp: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; they were written in UTC.
    return stamp.replace(tzinfo=UTC) if stamp is not None and stamp.tzinfo is None else stamp


def _silent_for(job: Job, now: datetime) -> int:
    """Whole seconds since the job's last sign of life (heartbeat, else start, else the
    last state change)."""
    last = _aware(job.heartbeat_at or job.started_at or job.updated_at)
    return int((now - last).total_seconds()) if last is not None else 0


def reap_stale(session: Session, settings: Settings, now: datetime | None = None) -> Reaped:
    """Requeue, fail or cancel every running or cancelling job whose heartbeat is older than
    :meth:`Settings.heartbeat_timeout`. Rows are locked (``SKIP LOCKED``: a worker that
    is writing its row right now is alive), so two reapers never act on the same job.
    The caller commits, then dispatches ``requeued``."""
    now = now or utcnow()
    timeout = settings.heartbeat_timeout()
    cutoff = now - timedelta(seconds=timeout)
    last_sign = func.coalesce(Job.heartbeat_at, Job.started_at, Job.updated_at)
    query = (
        select(Job)
        .where(Job.status.in_([JobStatus.running, JobStatus.cancelling]), last_sign < cutoff)
        .order_by(Job.id)
        .with_for_update(skip_locked=True)
    )
    reaped = Reaped()
    for job in list(session.scalars(query)):
        outcome = recover(
            session, job, settings, f"worker lost: no heartbeat for {_silent_for(job, now)} s"
        )
        getattr(reaped, outcome).append(job if outcome == "requeued" else job.id)
    return reaped


def recover(session: Session, job: Job, settings: Settings, lost: str) -> str:
    """Decide the fate of a running or cancelling job whose worker is gone: finish its
    cancellation, fail it on its last attempt, or requeue it as a new attempt (a new
    attempt also fences the lost worker out, should it come back: its writes name the old
    attempt). Returns ``cancelled``, ``failed`` or ``requeued``; the caller holds the
    row's lock and commits."""
    if job.status == JobStatus.cancelling:
        transition(session, job, JobStatus.cancelled, f"{lost}; cancellation completed")
        return "cancelled"
    counted = job.attempt - (job.preemptions or 0)
    if counted >= settings.max_attempts:
        message = (
            f"{lost} on attempt {counted} of {settings.max_attempts}; "
            f"not retried (LEAP_MAX_ATTEMPTS)"
        )
        transition(session, job, JobStatus.failed, message, error=message)
        return "failed"
    job.attempt += 1
    transition(
        session,
        job,
        JobStatus.queued,
        f"{lost}; requeued as attempt {job.attempt}",
        dispatched_at=None,
        worker=None,
        heartbeat_at=None,
    )
    return "requeued"


def preempt(session: Session, job: Job, reason: str) -> str:
    """Requeue a running job whose run checkpointed and stopped for a SIGTERM (a spot
    instance reclaimed, a node drained): a new attempt that resumes from the checkpoint and
    does not count against ``LEAP_MAX_ATTEMPTS``, since nothing was wrong with the job or its
    worker. A job being cancelled is cancelled instead. Returns ``cancelled`` or
    ``requeued``; the caller holds the row's lock and commits."""
    if job.status == JobStatus.cancelling:
        transition(session, job, JobStatus.cancelled, f"{reason}; cancellation completed")
        return "cancelled"
    job.attempt += 1
    job.preemptions = (job.preemptions or 0) + 1
    transition(
        session,
        job,
        JobStatus.queued,
        f"{reason}; requeued as attempt {job.attempt} (a preemption: not counted against "
        f"LEAP_MAX_ATTEMPTS)",
        dispatched_at=None,
        worker=None,
        heartbeat_at=None,
    )
    return "requeued"


def due_for_redispatch(
    session: Session, settings: Settings, now: datetime | None = None
) -> list[Job]:
    """Queued jobs whose message may be gone: last dispatched (or, never dispatched,
    queued) more than ``LEAP_REDISPATCH_SECONDS`` ago. Oldest first, so a long backlog is
    re-sent in the order it was submitted."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=settings.redispatch_seconds)
    last_sent = func.coalesce(Job.dispatched_at, Job.updated_at)
    query = (
        select(Job)
        .where(Job.status == JobStatus.queued, last_sent < cutoff)
        .order_by(Job.created_at, Job.id)
    )
    return list(session.scalars(query))
