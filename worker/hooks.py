"""The trainer hook that keeps the job row current and answers cancellation.

Writes are throttled (``every`` seconds, default 1 s) so that a fast loop does not turn
into a database load; the same throttled read sees a ``cancelling`` status, so a
running job stops within about a second of the request plus one training step.
"""

from __future__ import annotations

import math
import time

from sqlalchemy import select, update

from jobs.db import session_scope
from jobs.models import Job, JobStatus, utcnow
from jobs.states import log
from leap_core.training.hooks import Hook, StepInfo
from leap_core.training.trainer import Trainer


def _finite(values: dict[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items() if math.isfinite(float(v))}


class JobRowHook(Hook):
    def __init__(self, database_url: str, job_id: str, every: float = 1.0) -> None:
        self.database_url = database_url
        self.job_id = job_id
        self.every = every
        self._last_write = 0.0
        self._cancel = False
        self._started = time.monotonic()
        self._start_step = 0
        self._metrics: dict[str, float] = {}

    def _write(self, **values) -> None:
        """Update progress fields and read back the status, in one short transaction."""
        with session_scope(self.database_url) as session:
            session.execute(update(Job).where(Job.id == self.job_id)
                            .values(heartbeat_at=utcnow(), **values))
            status = session.scalar(select(Job.status).where(Job.id == self.job_id))
        self._cancel = status == JobStatus.cancelling
        self._last_write = time.monotonic()

    def on_start(self, trainer: Trainer) -> None:
        self._started = time.monotonic()
        self._start_step = trainer.global_step
        self._metrics = _finite(trainer.last_metrics)
        self._write(total_steps=trainer.total_steps, epochs=trainer.spec.train.epochs,
                    epoch=trainer.epoch, global_step=trainer.global_step,
                    mlflow_run_id=trainer.mlflow_run_id)
        self._log(f"training on {trainer.device}: {trainer.data.manifest.num_classes} classes, "
                  f"{len(trainer.data.manifest.records)} images, {trainer.total_steps} steps"
                  + (f", resumed at epoch {trainer.epoch}" if trainer.global_step else ""))

    def on_step(self, trainer: Trainer, info: StepInfo) -> None:
        first = info.global_step == self._start_step + 1
        if not first and time.monotonic() - self._last_write < self.every:
            return
        done = info.global_step - self._start_step
        elapsed = time.monotonic() - self._started
        eta = (info.total_steps - info.global_step) * elapsed / done if done else None
        latest = {**self._metrics, **{f"step_{k}": v for k, v in _finite(info.figures).items()}}
        self._write(epoch=info.epoch, step=info.step, global_step=info.global_step,
                    total_steps=info.total_steps, eta_seconds=eta, metrics=latest)
        if first:  # its time stamp measures how long a job waits for its first step
            self._log(f"first step done (global step {info.global_step})")

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        self._metrics = _finite(metrics)
        self._write(epoch=epoch + 1, global_step=trainer.global_step, metrics=self._metrics)
        shown = ", ".join(f"{k} {v:.4g}" for k, v in self._metrics.items()
                          if k in ("train_loss", "train_accuracy", "rank1", "mAP"))
        self._log(f"epoch {epoch + 1}/{trainer.spec.train.epochs}: {shown}")

    def on_checkpoint(self, trainer: Trainer, path) -> None:
        self._log(f"checkpoint {path} (epoch {trainer.epoch})")

    def on_failure(self, trainer: Trainer, error: BaseException) -> None:
        # Where the run stopped, exactly (the throttled step writes may lag a second).
        self._write(epoch=trainer.epoch, global_step=trainer.global_step, eta_seconds=None)

    def should_stop(self, trainer: Trainer) -> bool:
        return self._cancel

    def _log(self, message: str) -> None:
        with session_scope(self.database_url) as session:
            job = session.get(Job, self.job_id)
            if job is not None:
                log(session, job, message)
