"""What the train task does with a job id: lease the row, train, record the outcome.

The state is checked first, under a row lock, so that a redelivered or duplicated message
is harmless: only a queued job (or a running one whose worker stopped heart-beating, i.e.
died) is taken. The lease is the pair (attempt, worker) written on the row; every later
write of this run is fenced by it, so a worker that the reaper gave up on cannot
overwrite the attempt that replaced it. A heartbeat thread keeps the lease fresh during
long evaluations. Every state write waits out a database outage with backoff
(``LEAP_DB_RETRY_SECONDS``), and every failure of the run becomes a one-line reason on
the row (:mod:`worker.faults`); the worker process itself carries on to the next job.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from jobs.db import session_scope
from jobs.models import Job, JobStatus, utcnow
from jobs.paths import escapes
from jobs.recovery import recover
from jobs.retry import with_db_retry
from jobs.settings import Settings, get_settings
from jobs.states import log, transition
from leap_core.config import JobSpec, parse_spec
from leap_core.training.trainer import Trainer, TrainingCancelled, resolve_device
from worker.faults import describe, missing_dataset_root
from worker.hooks import LIVE, JobRowHook, LeaseLost

logger = logging.getLogger(__name__)


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


def _lease_once(settings: Settings, job_id: str, worker: str) -> Lease | None:
    with session_scope(settings.database_url) as session:
        job = session.scalar(select(Job).where(Job.id == job_id).with_for_update())
        if job is None:
            logger.warning("job %s: no such row; message dropped", job_id)
            return None
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
            return None
        run_dir = job.run_dir or str(settings.runs_dir.resolve() / job.id)
        transition(
            session, job, JobStatus.running, f"started on {worker}", worker=worker, run_dir=run_dir
        )
        return Lease(job.id, job.attempt, worker, dict(job.spec), run_dir)


def lease(settings: Settings, job_id: str, worker: str) -> Lease | None:
    """Move the job to running for this worker, or return None when there is nothing to do
    (finished, cancelled, or running with a live heartbeat elsewhere)."""
    return with_db_retry(
        lambda: _lease_once(settings, job_id, worker),
        f"job {job_id}: lease",
        settings.db_retry_seconds,
    )


def _owned(held: Lease) -> list[Any]:
    return [
        Job.id == held.job_id,
        Job.attempt == held.attempt,
        Job.worker == held.worker,
        Job.status.in_(LIVE),
    ]


class _Heartbeat(threading.Thread):
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
                        update(Job).where(*_owned(self.held)).values(heartbeat_at=utcnow())
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
) -> bool:
    with session_scope(settings.database_url) as session:
        job = session.scalar(select(Job).where(*_owned(held)).with_for_update())
        if job is None:
            return False
        for line in events:
            log(session, job, line)
        if target == JobStatus.succeeded and job.status == JobStatus.cancelling:
            message += " (finished before the cancellation took effect)"
        transition(session, job, target, message, **fields)
        return True


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
    done = with_db_retry(
        lambda: _finish_once(settings, held, target, message, events or [], fields),
        f"job {held.job_id}: recording {target.value}",
        settings.db_retry_seconds,
    )
    if not done:
        logger.warning(
            "job %s attempt %d: lease lost; %s not recorded",
            held.job_id,
            held.attempt,
            target.value,
        )
    return done


def run_job(job_id: str, worker: str, settings: Settings | None = None) -> str:
    """Train job ``job_id`` to its end; returns the final status (or ``skipped``)."""
    settings = settings or get_settings()
    held = lease(settings, job_id, worker)
    if held is None:
        return "skipped"
    # Four beats per reaper timeout, so a job in a long setup or evaluation (no steps,
    # hence no progress writes) never looks dead; at most one every 10 s.
    every = min(10.0, max(0.5, settings.heartbeat_timeout() / 4))
    beat = _Heartbeat(settings.database_url, held, every)
    beat.start()
    try:
        return _train(settings, held)
    finally:
        beat.stopped.set()


def _refusal(spec: JobSpec, settings: Settings) -> str | None:
    """Why this worker will not read the spec's data, or None. The API checked the paths
    at submission; a symlink can be re-pointed since, so they are resolved again here."""
    roots = settings.resolved_data_roots()
    found = escapes(spec.model_dump(mode="json"), roots)
    if found:
        return "; ".join(f"{escape.field} {escape.message(roots)}" for escape in found)
    root = missing_dataset_root(spec)
    if root is not None:
        return (
            f"dataset root {root} does not exist on this worker (removed or unmounted "
            f"after the job was submitted)"
        )
    return None


def _device_of(spec: JobSpec | None) -> str:
    """The device the spec would train on (for a failure before the trainer existed)."""
    try:
        return str(resolve_device(spec.train.device)) if spec is not None else ""
    except ValueError:
        return spec.train.device if spec is not None else ""


def _train(settings: Settings, held: Lease) -> str:
    from leap_core.tracking.mlflow_hook import MLflowHook

    run_dir = Path(held.run_dir)
    resume = run_dir / "last.pt"
    spec: JobSpec | None = None
    trainer: Trainer | None = None
    try:
        spec = parse_spec(held.spec)
        refused = _refusal(spec, settings)
        if refused is not None:
            finish(settings, held, JobStatus.failed, refused, error=refused)
            return JobStatus.failed.value
        hooks = [
            MLflowHook(
                tracking_uri=settings.mlflow_tracking_uri,
                tags={"job_id": held.job_id, "attempt": str(held.attempt)},
            ),
            JobRowHook(
                settings.database_url,
                held.job_id,
                every=settings.heartbeat_seconds,
                attempt=held.attempt,
                worker=held.worker,
                db_retry_seconds=settings.db_retry_seconds,
            ),
        ]
        trainer = Trainer(spec, run_dir, hooks)
        metrics = trainer.fit(resume if resume.is_file() else None)
    except LeaseLost as error:
        logger.warning("%s", error)
        return "lease lost"
    except TrainingCancelled as error:
        finish(settings, held, JobStatus.cancelled, f"{error}; last checkpoint kept")
        return JobStatus.cancelled.value
    except Exception as error:  # any failure of the run is the job's failure
        logger.exception("job %s failed", held.job_id)
        device = str(trainer.device) if trainer is not None else _device_of(spec)
        message = describe(error, spec, device)
        finish(settings, held, JobStatus.failed, message, error=message)
        return JobStatus.failed.value
    final = {k: float(v) for k, v in metrics.items() if v == v and abs(v) != float("inf")}
    shown = ", ".join(f"{k} {v:.4g}" for k, v in final.items() if k in ("rank1", "mAP", "mINP"))
    # total_steps was the plan (epochs × steps per epoch); a short last batch can end an
    # epoch early, so the finished job reports the steps it actually made.
    finish(
        settings,
        held,
        JobStatus.succeeded,
        "succeeded",
        events=[f"finished: {shown}"],
        metrics=final,
        mlflow_run_id=trainer.mlflow_run_id,
        global_step=trainer.global_step,
        total_steps=trainer.global_step,
        epoch=trainer.epoch,
    )
    return JobStatus.succeeded.value
