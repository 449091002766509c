"""The hooks of a job's run (:func:`job_hooks`): MLflow, and the hook that keeps the job row
current and answers cancellation.

Writes are throttled (``every`` seconds, default 1 s) so that a fast loop does not turn
into a database load; the same throttled read sees a ``cancelling`` status, so a
running job stops within about a second of the request plus one training step.

Every write is fenced by the lease: it touches the row only while the row still names
this attempt and this worker. If the reaper gave the job to another worker (this one was
silent too long), the next read says so and training stops with :class:`LeaseLost`
instead of running the job twice. Progress writes during a database outage are skipped
(the next step writes again); event lines wait for the database with backoff.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, select, update

from jobs.db import session_scope
from jobs.models import Job, JobStatus, utcnow
from jobs.retry import is_transient, with_db_retry
from jobs.settings import Settings
from jobs.states import log
from leap_core.training.hooks import Hook, StepInfo, finite_metrics
from leap_core.training.trainer import Trainer
from worker.lease import Lease, owned

logger = logging.getLogger(__name__)


class LeaseLost(RuntimeError):
    """The job row no longer belongs to this attempt on this worker; stop without touching
    it."""


class JobRowHook(Hook):
    def __init__(
        self,
        database_url: str,
        held: Lease,
        every: float = 1.0,
        db_retry_seconds: float = 600.0,
    ) -> None:
        self.database_url = database_url
        self.held = held
        self.job_id = held.job_id
        self.every = every
        self.db_retry_seconds = db_retry_seconds
        self._last_write = 0.0
        self._cancel = False
        self._lost = False
        self._outage_logged = False
        self._started = time.monotonic()
        self._start_step = 0
        self._metrics: dict[str, float] = {}
        self._work: dict[str, float] = {}

    def _owned(self) -> list[Any]:
        return owned(self.held)

    def _write_once(self, values: dict) -> None:
        with session_scope(self.database_url) as session:
            done = session.execute(
                update(Job).where(*self._owned()).values(heartbeat_at=utcnow(), **values)
            )
            status = session.scalar(select(Job.status).where(Job.id == self.job_id))
        self._lost = cast(CursorResult[Any], done).rowcount == 0
        self._cancel = status == JobStatus.cancelling

    def _write(self, required: bool = False, **values: Any) -> None:
        """Update progress fields and read back the status, in one short transaction.
        ``required`` writes (the first and the epoch ends) wait out an outage; a step's
        progress is skipped instead, since the next step writes it again."""
        try:
            if required:
                with_db_retry(
                    lambda: self._write_once(values),
                    f"job {self.job_id}: progress",
                    self.db_retry_seconds,
                )
            else:
                self._write_once(values)
        except Exception as error:
            if required or not is_transient(error):
                raise
            if not self._outage_logged:
                logger.warning(
                    "job %s: progress not recorded, database unavailable (%s); training goes on",
                    self.job_id,
                    type(error).__name__,
                )
                self._outage_logged = True
        else:
            self._outage_logged = False
        self._last_write = time.monotonic()
        if self._lost:
            raise LeaseLost(
                f"job {self.job_id} attempt {self.held.attempt} is no longer held by "
                f"{self.held.worker}; stopping without touching the row"
            )

    def on_start(self, trainer: Trainer) -> None:
        self._started = time.monotonic()
        self._start_step = trainer.global_step
        self._metrics = finite_metrics(trainer.last_metrics)
        self._write(
            required=True,
            total_steps=trainer.total_steps,
            epoch=trainer.epoch,
            global_step=trainer.global_step,
        )
        self._log(
            f"training on {trainer.device}: {trainer.data.manifest.num_classes} classes, "
            f"{len(trainer.data.manifest.records)} images, {trainer.total_steps} steps"
            + (f", resumed at epoch {trainer.epoch}" if trainer.global_step else "")
            + (f", step {trainer.step_in_epoch}" if trainer.step_in_epoch else "")
        )

    def record_run(self, run_id: str, experiment_id: str) -> None:
        """Put the MLflow run's and its experiment's ids on the row as soon as the run
        exists (given to the MLflow hook as its ``on_run``), so the job links to its run
        while it trains."""
        self._write(required=True, mlflow_run_id=run_id, mlflow_experiment_id=experiment_id)

    def on_step(self, trainer: Trainer, info: StepInfo) -> None:
        first = info.global_step == self._start_step + 1
        if not first and time.monotonic() - self._last_write < self.every:
            return
        done = info.global_step - self._start_step
        elapsed = time.monotonic() - self._started
        eta = (info.total_steps - info.global_step) * elapsed / done if done else None
        latest = {
            **self._metrics,
            **{f"step_{k}": v for k, v in finite_metrics(info.figures).items()},
        }
        self._write(
            epoch=info.epoch,
            step=info.step,
            global_step=info.global_step,
            total_steps=info.total_steps,
            eta_seconds=eta,
            metrics=latest,
        )
        if first:  # its time stamp measures how long a job waits for its first step
            self._log(f"first step done (global step {info.global_step})")

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        self._metrics = finite_metrics(metrics)
        self._write(
            required=True, epoch=epoch + 1, global_step=trainer.global_step, metrics=self._metrics
        )
        shown = ", ".join(
            f"{k} {v:.4g}"
            for k, v in self._metrics.items()
            if k in ("train_loss", "train_accuracy", "rank1", "mAP")
        )
        self._log(f"epoch {epoch + 1}/{trainer.spec.train.epochs}: {shown}")

    def on_checkpoint(self, trainer: Trainer, path: Path) -> None:
        within = f", step {trainer.step_in_epoch}" if trainer.step_in_epoch else ""
        self._log(f"checkpoint {path} (epoch {trainer.epoch}{within})")

    def on_work(self, trainer: Trainer, what: str, done: int, total: int) -> None:
        """A long piece of work between steps (re-ranking, decoding the evaluation images)
        is told in the job's events when it starts and when it ends, with its time."""
        now = time.monotonic()
        started = self._work.setdefault(what, now)
        if done >= total:
            del self._work[what]
            self._log(f"{what}: {total:,} of {total:,} done in {now - started:.1f} s")
        elif started == now:
            self._log(f"{what}: {done:,} of {total:,} done")

    def on_failure(self, trainer: Trainer, error: BaseException) -> None:
        # Where the run stopped, exactly (the throttled step writes may lag a second). Best
        # effort: the original error is what the job must report, not a failed write.
        if isinstance(error, LeaseLost):
            return
        try:
            self._write_once(
                dict(epoch=trainer.epoch, global_step=trainer.global_step, eta_seconds=None)
            )
        except Exception:
            logger.warning("job %s: final progress not recorded", self.job_id, exc_info=True)

    def should_stop(self, trainer: Trainer) -> bool:
        return self._cancel

    def _log(self, message: str) -> None:
        def write() -> None:
            with session_scope(self.database_url) as session:
                job = session.scalar(select(Job).where(*self._owned()))
                if job is not None:
                    log(session, job, message)

        with_db_retry(write, f"job {self.job_id}: event", self.db_retry_seconds)


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
