"""What the train task does with a job id: lease the row, train, record the outcome.

The state is checked first, under a row lock, so that a redelivered or duplicated message
is harmless: only a queued job (or a running one whose worker stopped heart-beating, i.e.
died) is taken. A heartbeat thread keeps the lease fresh during long evaluations.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update

from jobs.db import session_scope
from jobs.models import Job, JobStatus, utcnow
from jobs.settings import Settings, get_settings
from jobs.states import log, transition
from leap_core.config import parse_spec
from leap_core.training.trainer import Trainer, TrainingCancelled
from worker.hooks import JobRowHook

logger = logging.getLogger(__name__)


def _aware(stamp: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; they were written in UTC.
    return stamp.replace(tzinfo=UTC) if stamp is not None and stamp.tzinfo is None else stamp


def lease(settings: Settings, job_id: str, worker: str) -> Job | None:
    """Move the job to running for this worker, or return None when there is nothing to do
    (finished, cancelled, or running with a live heartbeat elsewhere)."""
    with session_scope(settings.database_url) as session:
        job = session.scalar(select(Job).where(Job.id == job_id).with_for_update())
        if job is None:
            logger.warning("job %s: no such row; message dropped", job_id)
            return None
        stale = utcnow() - timedelta(seconds=settings.lease_seconds)
        heartbeat = _aware(job.heartbeat_at)
        if job.status in (JobStatus.running, JobStatus.cancelling) and (
                heartbeat is None or heartbeat < stale):
            # The worker that held it died; its message came back to us.
            if job.status == JobStatus.cancelling:
                transition(session, job, JobStatus.cancelled, "worker lost while cancelling")
                return None
            transition(session, job, JobStatus.queued, f"worker {job.worker} lost; requeued")
        if job.status != JobStatus.queued:
            logger.info("job %s is %s; nothing to do", job_id, job.status)
            return None
        run_dir = job.run_dir or str(settings.runs_dir.resolve() / job.id)
        transition(session, job, JobStatus.running, f"started on {worker}",
                   worker=worker, run_dir=run_dir)
        session.flush()
        session.expunge(job)
        return job


class _Heartbeat(threading.Thread):
    """Stamps ``heartbeat_at`` every few seconds until stopped."""

    def __init__(self, database_url: str, job_id: str, every: float = 10.0) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{job_id}")
        self.database_url, self.job_id, self.every = database_url, job_id, every
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            try:
                with session_scope(self.database_url) as session:
                    session.execute(update(Job).where(Job.id == self.job_id)
                                    .values(heartbeat_at=utcnow()))
            except Exception:  # a missed beat is not fatal; the next one retries
                logger.exception("heartbeat of job %s failed", self.job_id)


def finish(settings: Settings, job_id: str, target: JobStatus, message: str,
           **fields) -> None:
    with session_scope(settings.database_url) as session:
        job = session.scalar(select(Job).where(Job.id == job_id).with_for_update())
        if target == JobStatus.succeeded and job.status == JobStatus.cancelling:
            message += " (finished before the cancellation took effect)"
        transition(session, job, target, message, **fields)


def run_job(job_id: str, worker: str, settings: Settings | None = None) -> str:
    """Train job ``job_id`` to its end; returns the final status (or ``skipped``)."""
    settings = settings or get_settings()
    job = lease(settings, job_id, worker)
    if job is None:
        return "skipped"
    beat = _Heartbeat(settings.database_url, job_id)
    beat.start()
    try:
        return _train(settings, job)
    finally:
        beat.stopped.set()


def _train(settings: Settings, job: Job) -> str:
    from leap_core.tracking.mlflow_hook import MLflowHook

    run_dir = Path(job.run_dir)
    resume = run_dir / "last.pt"
    try:
        spec = parse_spec(job.spec)
        hooks = [MLflowHook(tracking_uri=settings.mlflow_tracking_uri,
                            tags={"job_id": job.id, "attempt": str(job.attempt)}),
                 JobRowHook(settings.database_url, job.id, every=settings.heartbeat_seconds)]
        trainer = Trainer(spec, run_dir, hooks)
        metrics = trainer.fit(resume if resume.is_file() else None)
    except TrainingCancelled as error:
        finish(settings, job.id, JobStatus.cancelled, f"{error}; last checkpoint kept")
        return JobStatus.cancelled.value
    except Exception as error:  # any failure of the run is the job's failure
        logger.exception("job %s failed", job.id)
        message = f"{type(error).__name__}: {error}"[:4000]
        finish(settings, job.id, JobStatus.failed, message, error=message)
        return JobStatus.failed.value
    final = {k: float(v) for k, v in metrics.items() if v == v and abs(v) != float("inf")}
    with session_scope(settings.database_url) as session:
        row = session.get(Job, job.id)
        log(session, row, "finished: " + ", ".join(f"{k} {v:.4g}" for k, v in final.items()
                                                     if k in ("rank1", "mAP", "mINP")))
    # total_steps was the plan (epochs × steps per epoch); a short last batch can end an
    # epoch early, so the finished job reports the steps it actually made.
    finish(settings, job.id, JobStatus.succeeded, "succeeded", metrics=final,
           mlflow_run_id=trainer.mlflow_run_id, global_step=trainer.global_step,
           total_steps=trainer.global_step, epoch=trainer.epoch)
    return JobStatus.succeeded.value
