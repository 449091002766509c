"""The lease: which attempt of a job this worker holds, and every write fenced by it.

The state is checked first, under a row lock, so that a redelivered or duplicated message
is harmless: only a queued job (or a running one whose worker stopped heart-beating, i.e.
died) is taken. The lease is the pair (attempt, worker) written on the row; every later
write of this run is fenced by it (:func:`owned`), so a worker that the reaper gave up on
cannot overwrite the attempt that replaced it. A heartbeat thread keeps the lease fresh
during long evaluations. Every state write waits out a database outage with backoff
(``LEAP_DB_RETRY_SECONDS``).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from jobs.db import session_scope
from jobs.dispatch import dispatch_committed
from jobs.fair_queue import ACTIVE, held_reason, next_held, next_job
from jobs.models import Job, JobStatus, utcnow
from jobs.recovery import preempt, recover
from jobs.retry import with_db_retry
from jobs.settings import Settings
from jobs.states import log, transition

logger = logging.getLogger(__name__)

#: The states in which a job belongs to the worker holding its lease.
LIVE = ACTIVE


def _aware(stamp: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; they were written in UTC.
    return stamp.replace(tzinfo=UTC) if stamp is not None and stamp.tzinfo is None else stamp


@dataclass(frozen=True)
class Lease:
    """What this worker holds: one attempt of one job, and the job's data."""

    job_id: str
    attempt: int
    worker: str
    spec: dict
    run_dir: str


def _lease_once(settings: Settings, job_id: str, worker: str) -> tuple[Lease | None, bool]:
    """The lease, and whether the message went to another job's turn (then the job it
    named is sent again, so that every queued job keeps a message of its own)."""
    with session_scope(settings.database_url) as session:
        job = session.scalar(select(Job).where(Job.id == job_id).with_for_update())
        if job is None:
            logger.warning("job %s: no such row; message dropped", job_id)
            return None, False
        stale = utcnow() - timedelta(seconds=settings.lease_seconds)
        heartbeat = _aware(job.heartbeat_at)
        if job.status in LIVE and (heartbeat is None or heartbeat < stale):
            # The worker that held it died and its message came back to us: the same
            # decision as the reaper's (requeue as a new attempt, or give up).
            silent = int((utcnow() - heartbeat).total_seconds()) if heartbeat else 0
            recover(
                session, job, settings, f"worker {job.worker} lost: no heartbeat for {silent} s"
            )
        if job.status != JobStatus.queued:
            logger.info("job %s is %s; nothing to do", job_id, job.status)
            return None, False
        # The message names a job; the job whose turn comes first starts (jobs.fair_queue).
        chosen = next_job(session, settings, job)
        if chosen is None:
            logger.info("job %s is held: %s", job_id, held_reason(session, settings, job))
            return None, False
        if chosen.id != job.id:
            logger.info("job %s: job %s's turn comes first; it starts", job_id, chosen.id)
        run_dir = chosen.run_dir or str(settings.runs_dir.resolve() / chosen.id)
        transition(
            session,
            chosen,
            JobStatus.running,
            f"started on {worker}",
            worker=worker,
            run_dir=run_dir,
        )
        held = Lease(chosen.id, chosen.attempt, worker, dict(chosen.spec), run_dir)
        return held, chosen.id != job.id


def lease(settings: Settings, job_id: str, worker: str) -> Lease | None:
    """Move the job whose turn it is to running for this worker (the job the message
    names, or another owner's whose turn comes first), or return None when there is
    nothing to do (finished, cancelled, running with a live heartbeat elsewhere, or held
    by a per-owner limit)."""
    held, passed_over = with_db_retry(
        lambda: _lease_once(settings, job_id, worker),
        f"job {job_id}: lease",
        settings.db_retry_seconds,
    )
    if passed_over:
        try:
            with session_scope(settings.database_url) as session:
                named = session.get(Job, job_id)
                if named is not None and named.status == JobStatus.queued:
                    dispatch_committed(session, settings, named)
        except Exception:  # the reconciler sends it after LEAP_REDISPATCH_SECONDS
            logger.warning("job %s: passed over but not sent again; the reconciler will", job_id)
    return held


def owned(held: Lease) -> list[Any]:
    """The lease fence: the WHERE clause of a row this attempt on this worker still holds.
    Every write of a run (progress, heartbeat, events, the outcome) goes through it."""
    return [
        Job.id == held.job_id,
        Job.attempt == held.attempt,
        Job.worker == held.worker,
        Job.status.in_(LIVE),
    ]


class Heartbeat(threading.Thread):
    """Stamps ``heartbeat_at`` every few seconds until stopped (only while the lease holds)."""

    def __init__(self, database_url: str, held: Lease, every: float = 10.0) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{held.job_id}")
        self.database_url, self.held, self.every = database_url, held, every
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            try:
                with session_scope(self.database_url) as session:
                    session.execute(
                        update(Job).where(*owned(self.held)).values(heartbeat_at=utcnow())
                    )
            except Exception:  # a missed beat is not fatal; the next one retries
                logger.warning("heartbeat of job %s failed", self.held.job_id, exc_info=True)


def _finish_once(
    settings: Settings,
    held: Lease,
    target: JobStatus,
    message: str,
    events: list[str],
    fields: dict,
) -> str | None:
    with session_scope(settings.database_url) as session:
        job = session.scalar(select(Job).where(*owned(held)).with_for_update())
        if job is None:
            return None
        for line in events:
            log(session, job, line)
        if target == JobStatus.succeeded and job.status == JobStatus.cancelling:
            message += " (finished before the cancellation took effect)"
        transition(session, job, target, message, **fields)
        return job.owner


def finish(
    settings: Settings,
    held: Lease,
    target: JobStatus,
    message: str,
    events: list[str] | None = None,
    **fields: Any,
) -> bool:
    """Record the run's outcome (with ``events`` log lines before it) in one transaction,
    waiting out a database outage. Returns False, touching nothing, when the lease was lost
    meanwhile (the reaper requeued the job: its new attempt owns the row)."""
    owner = with_db_retry(
        lambda: _finish_once(settings, held, target, message, events or [], fields),
        f"job {held.job_id}: recording {target.value}",
        settings.db_retry_seconds,
    )
    done = owner is not None
    if owner is not None and settings.max_running_per_owner is not None:
        release_held(settings, owner)
    if not done:
        logger.warning(
            "job %s attempt %d: lease lost; %s not recorded",
            held.job_id,
            held.attempt,
            target.value,
        )
    return done


def cancel_requested(settings: Settings, held: Lease) -> bool:
    """Whether the job this attempt holds was asked to stop (``cancelling``), for a wait
    outside the training loop (a job waiting for free devices)."""
    with session_scope(settings.database_url) as session:
        status = session.scalar(select(Job.status).where(*owned(held)))
    return status == JobStatus.cancelling


def release_held(settings: Settings, owner: str) -> None:
    """A job of ``owner`` ended: send a message for its next queued job, which the
    per-owner running limit may have held (its earlier message found it held and passed).
    Best effort: the reconciler re-sends after ``LEAP_REDISPATCH_SECONDS`` anyway."""
    try:
        with session_scope(settings.database_url) as session:
            job = next_held(session, owner)
            if job is not None:
                dispatch_committed(session, settings, job)
    except Exception:
        logger.warning("owner %s: next held job not sent; the reconciler will", owner)


def _requeue_once(settings: Settings, held: Lease, reason: str, preempted: bool) -> Job | None:
    with session_scope(settings.database_url) as session:
        job = session.scalar(select(Job).where(*owned(held)).with_for_update())
        if job is None:
            return None
        if preempted:
            outcome = preempt(session, job, reason)
        else:
            outcome = recover(session, job, settings, reason)
        session.flush()
        session.expunge(job)
        return job if outcome == "requeued" else None


def requeue(settings: Settings, held: Lease, reason: str, preempted: bool = False) -> str:
    """Give the job back after a failure that was not its own (a service it needs was
    away): the same decision as for a lost worker (:func:`jobs.recovery.recover`): a new
    attempt, sent to the queue again, or a failure after ``LEAP_MAX_ATTEMPTS``. A
    ``preempted`` run (checkpointed for a SIGTERM) is requeued uncounted
    (:func:`jobs.recovery.preempt`). Returns the job's status afterwards, or ``lease
    lost``."""
    job = with_db_retry(
        lambda: _requeue_once(settings, held, reason, preempted),
        f"job {held.job_id}: requeueing",
        settings.db_retry_seconds,
    )
    if job is None:
        with session_scope(settings.database_url) as session:
            status = session.scalar(select(Job.status).where(Job.id == held.job_id))
        return str(status) if status is not None else "lease lost"
    try:
        with session_scope(settings.database_url) as session:
            dispatch_committed(session, settings, session.merge(job))
    except Exception:  # the reconciler sends it after LEAP_REDISPATCH_SECONDS
        logger.warning("job %s: requeued but not sent; the reconciler will", held.job_id)
    return JobStatus.queued.value
