"""What the train task does with a job id: lease the row (:mod:`worker.lease`), train,
record the outcome.

Every failure of the run becomes a one-line reason on the row (:mod:`worker.faults`); the
worker process itself carries on to the next job.
"""

from __future__ import annotations

import logging
from pathlib import Path

from jobs.models import JobStatus
from jobs.paths import escapes
from jobs.settings import Settings, get_settings
from leap_core.config import JobSpec, parse_spec
from leap_core.training.hooks import Hook, finite_metrics
from leap_core.training.trainer import Trainer, TrainingCancelled, resolve_device
from worker.faults import describe, is_infrastructure, missing_dataset_root
from worker.hooks import JobRowHook, LeaseLost
from worker.lease import Heartbeat, Lease, finish, lease, requeue

logger = logging.getLogger(__name__)


def run_job(job_id: str, worker: str, settings: Settings | None = None) -> str:
    """Train job ``job_id`` to its end; returns the final status (or ``skipped``)."""
    settings = settings or get_settings()
    held = lease(settings, job_id, worker)
    if held is None:
        return "skipped"
    # Four beats per reaper timeout, so a job in a long setup or evaluation (no steps,
    # hence no progress writes) never looks dead; at most one every 10 s.
    every = min(10.0, max(0.5, settings.heartbeat_timeout() / 4))
    beat = Heartbeat(settings.database_url, held, every)
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
            f"dataset root {root} does not exist on this worker: it was removed or "
            f"unmounted after the job was submitted, or this worker does not mount it "
            f"(LEAP_DATA_ROOTS here: {', '.join(map(str, settings.resolved_data_roots()))})"
        )
    return None


def _device_of(spec: JobSpec | None) -> str:
    """The device the spec would train on (for a failure before the trainer existed)."""
    try:
        return str(resolve_device(spec.train.device)) if spec is not None else ""
    except ValueError:
        return spec.train.device if spec is not None else ""


def _requeue_or_leave(settings: Settings, held: Lease, message: str) -> str:
    """A new attempt for a job whose run a service failed; if the job database is the
    service that is away, the row cannot be written now: the job stays running, its
    heartbeat stops, and the reaper requeues it once the database is back."""
    try:
        return requeue(settings, held, message)
    except Exception:
        logger.exception("job %s: not requeued; the reaper will", held.job_id)
        return "left to the reaper"


def job_hooks(settings: Settings, held: Lease) -> list[Hook]:
    """The hooks of a job's run: MLflow, and the job row (progress, cancellation)."""
    from leap_core.tracking.mlflow_hook import MLflowHook

    row = JobRowHook(
        settings.database_url,
        held,
        every=settings.heartbeat_seconds,
        db_retry_seconds=settings.db_retry_seconds,
    )
    tracking = MLflowHook(
        tracking_uri=settings.mlflow_tracking_uri,
        tags={"job_id": held.job_id, "attempt": str(held.attempt)},
        on_run=row.record_run,
        retry_seconds=settings.tracking_retry_seconds,
    )
    return [tracking, row]


def record_failure(settings: Settings, held: Lease, message: str, infrastructure: bool) -> str:
    """A failed attempt: requeued when a service failed it, the job failed otherwise."""
    if infrastructure:
        logger.warning("job %s attempt %d: %s", held.job_id, held.attempt, message)
        return _requeue_or_leave(settings, held, message)
    finish(settings, held, JobStatus.failed, message, error=message)
    return JobStatus.failed.value


def record_success(
    settings: Settings, held: Lease, trainer: Trainer, metrics: dict[str, float]
) -> str:
    final = finite_metrics(metrics)
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
        global_step=trainer.global_step,
        total_steps=trainer.global_step,
        epoch=trainer.epoch,
    )
    return JobStatus.succeeded.value


def _train(settings: Settings, held: Lease) -> str:
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
        if spec.resources.devices > 1:
            from worker.ranks import run_on_devices

            return run_on_devices(settings, held, spec)
        trainer = Trainer(spec, run_dir, job_hooks(settings, held))
        metrics = trainer.fit(resume if resume.is_file() else None)
    except LeaseLost as error:
        logger.warning("%s", error)
        return "lease lost"
    except TrainingCancelled as error:
        finish(settings, held, JobStatus.cancelled, f"{error}; last checkpoint kept")
        return JobStatus.cancelled.value
    except Exception as error:  # any other failure of the run is the job's failure
        device = str(trainer.device) if trainer is not None else _device_of(spec)
        if not is_infrastructure(error):
            logger.exception("job %s failed", held.job_id)
        return record_failure(
            settings, held, describe(error, spec, device), is_infrastructure(error)
        )
    return record_success(settings, held, trainer, metrics)
