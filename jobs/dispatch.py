"""Sending a job id to the workers' queue.

The API and the maintenance loop only produce messages, so they build a bare Celery app on
the shared broker and send the task by name: neither imports the worker (nor torch).
Messages are sent only after the job row is committed, so a worker never looks for a row
that is not there yet.
"""

from __future__ import annotations

from functools import lru_cache

from celery import Celery
from sqlalchemy import text, update
from sqlalchemy.orm import Session

from jobs.broker import TRAIN_TASK, broker_options
from jobs.models import Job, JobStatus, utcnow
from jobs.settings import Settings


@lru_cache(maxsize=4)
def producer(broker_url: str, settings_json: str) -> Celery:
    settings = Settings.model_validate_json(settings_json)
    app = Celery("leap-api", broker=broker_url, set_as_current=False)
    app.conf.update(
        broker_transport_options=broker_options(settings),
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        broker_pool_limit=50,
    )
    return app


def celery_priority(priority: int) -> int:
    """Job priority 0-9, higher first; Celery on Redis treats 0 as the highest."""
    return 9 - max(0, min(9, priority))


def dispatch(settings: Settings, job: Job) -> None:
    app = producer(settings.broker_url, settings.model_dump_json())
    app.send_task(
        TRAIN_TASK, args=[job.id], queue=settings.queue, priority=celery_priority(job.priority)
    )


def dispatch_committed(session: Session, settings: Settings, job: Job) -> None:
    """Send the id of a committed job, then stamp the row as dispatched. The stamp only
    tells an idempotent replay whether the message went out (a duplicate message is
    harmless anyway), so on PostgreSQL its commit does not wait for the disk."""
    dispatch(settings, job)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL synchronous_commit = off"))
    session.execute(update(Job).where(Job.id == job.id).values(dispatched_at=utcnow()))
    session.commit()


class NotDispatched(RuntimeError):
    """The broker did not take a committed job's message; the job stays stored and queued."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"the broker did not take job {job_id}")
        self.job_id = job_id


def dispatch_new(session: Session, settings: Settings, jobs: list[Job], created: bool) -> None:
    """After the commit of a submission: send every job it created, or, when the request was
    an idempotent replay, those still queued that never went out (the broker was down the
    first time). Raises :class:`NotDispatched` at the first job the broker refuses.

    A created job already stamped ``dispatched_at`` (in the transaction that stored it,
    which spares a submission its second commit) is only sent; if the broker refuses it,
    the stamp is taken back, so that a replay of the request sends it. Should the process
    die between the commit and the send, the stamp stays without a message: the
    reconciler re-sends such a job after ``LEAP_REDISPATCH_SECONDS``, as it does a job
    whose message Redis lost."""
    for job in jobs:
        if created and job.dispatched_at is not None:
            try:
                dispatch(settings, job)
            except Exception:
                _unstamp(session, job)
                raise NotDispatched(job.id) from None
        elif created or (job.dispatched_at is None and job.status == JobStatus.queued):
            try:
                dispatch_committed(session, settings, job)
            except Exception:
                raise NotDispatched(job.id) from None


def _unstamp(session: Session, job: Job) -> None:
    """Mark a job whose message the broker refused as never sent. Best effort: with the
    database gone too, the reconciler is left to send it."""
    try:
        session.execute(update(Job).where(Job.id == job.id).values(dispatched_at=None))
        session.commit()
        job.dispatched_at = None
    except Exception:
        session.rollback()


def broker_reachable(settings: Settings) -> bool:
    app = producer(settings.broker_url, settings.model_dump_json())
    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
        return True
    except Exception:
        return False
