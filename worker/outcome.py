"""How a job's attempt ended, in one typed place, for the one-process and the several-device
paths alike.

:func:`train` runs the trainer and turns every way a run can end into an :class:`Ended`
(the one except-ladder of the worker); the ``record_*`` functions write an ending to the
job row; :class:`Outcome` is what the train task returns (Celery keeps it as the task's
result); :class:`RankReport` is what each rank of a several-device job leaves beside the run
for the worker, in one shape.
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from jobs.models import JobStatus
from jobs.settings import Settings
from leap_core.training.checkpoint_store import latest_checkpoint
from leap_core.training.hooks import Hook, finite_metrics
from leap_core.training.preemption import preempt_on_sigterm
from leap_core.training.trainer import (
    Trainer,
    TrainingCancelled,
    TrainingPreempted,
    resolve_device,
)
from worker.faults import describe, is_infrastructure
from worker.hooks import LeaseLost
from worker.lease import Lease, finish, requeue

if TYPE_CHECKING:
    from leap_core.config import JobSpec

logger = logging.getLogger(__name__)


class Outcome(enum.StrEnum):
    """What an attempt left the job as, from this worker's side."""

    succeeded = JobStatus.succeeded.value
    failed = JobStatus.failed.value
    cancelled = JobStatus.cancelled.value
    queued = JobStatus.queued.value  # requeued: another attempt will run it
    preempted = "preempted"  # checkpointed for a SIGTERM and requeued, uncounted
    skipped = "skipped"  # not this worker's to run (finished, or leased by another)
    lease_lost = "lease lost"  # the reaper gave the job to a new attempt meanwhile
    left_to_reaper = "left to the reaper"  # the row could not be written; the reaper will


@dataclass
class Ended:
    """How a run ended: ``kind`` is ``succeeded``, ``cancelled``, ``preempted``, ``lease
    lost`` or ``error`` (then ``message`` is the one-line reason and ``infrastructure``
    whether a service, not the job, failed it)."""

    kind: str
    trainer: Trainer | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    message: str = ""
    infrastructure: bool = False


def train(
    spec: JobSpec,
    run_dir: Path,
    hooks: list[Hook],
    job_id: str,
    peer_lost: Callable[[BaseException], bool] | None = None,
) -> Ended:
    """Train ``spec`` in ``run_dir`` (resuming from its checkpoint when there is one) and
    say how it ended. Any exception of the run is the run's ending, never the worker's;
    ``peer_lost`` says whether an error is only the echo of another rank going away (an
    infrastructure failure). A SIGTERM while it trains (the worker told to stop, a node
    drained) checkpoints the run at the step boundary: it ends ``preempted``."""
    resume = latest_checkpoint(run_dir)
    trainer: Trainer | None = None
    try:
        with preempt_on_sigterm() as notice:
            trainer = Trainer(spec, run_dir, hooks)
            notice.attach(trainer)
            metrics = trainer.fit(resume)
    except LeaseLost as error:
        logger.warning("%s", error)
        return Ended(Outcome.lease_lost.value, trainer)
    except TrainingPreempted as error:
        return Ended(Outcome.preempted.value, trainer, message=str(error))
    except TrainingCancelled as error:
        return Ended(Outcome.cancelled.value, trainer, message=f"{error}; last checkpoint kept")
    except Exception as error:  # any other failure of the run is the job's failure
        infrastructure = is_infrastructure(error) or (peer_lost is not None and peer_lost(error))
        if not infrastructure:
            logger.exception("job %s failed", job_id)
        device = str(trainer.device) if trainer is not None else device_of(spec)
        message = describe(error, spec, device)
        return Ended("error", trainer, message=message, infrastructure=infrastructure)
    return Ended(Outcome.succeeded.value, trainer, metrics)


def device_of(spec: JobSpec | None) -> str:
    """The device the spec would train on (for a failure before the trainer existed)."""
    try:
        return str(resolve_device(spec.train.device)) if spec is not None else ""
    except ValueError:
        return spec.train.device if spec is not None else ""


def record(settings: Settings, held: Lease, ended: Ended) -> Outcome:
    """Write ``ended`` to the job row."""
    if ended.kind == Outcome.succeeded:
        assert ended.trainer is not None
        return record_success(settings, held, ended.trainer, ended.metrics)
    if ended.kind == Outcome.cancelled:
        finish(settings, held, JobStatus.cancelled, ended.message)
        return Outcome.cancelled
    if ended.kind == Outcome.lease_lost:
        return Outcome.lease_lost
    if ended.kind == Outcome.preempted:
        return record_preemption(settings, held, ended.message)
    return record_failure(settings, held, ended.message, ended.infrastructure)


def record_preemption(settings: Settings, held: Lease, message: str) -> Outcome:
    """A run that checkpointed for a SIGTERM: requeued as a new attempt that resumes there,
    not counted against ``LEAP_MAX_ATTEMPTS``."""
    logger.warning("job %s attempt %d: %s", held.job_id, held.attempt, message)
    outcome = _requeue_or_leave(settings, held, message, preempted=True)
    return Outcome.preempted if outcome == Outcome.queued else outcome


def record_failure(settings: Settings, held: Lease, message: str, infrastructure: bool) -> Outcome:
    """A failed attempt: requeued when a service failed it, the job failed otherwise."""
    if infrastructure:
        logger.warning("job %s attempt %d: %s", held.job_id, held.attempt, message)
        return _requeue_or_leave(settings, held, message)
    finish(settings, held, JobStatus.failed, message, error=message)
    return Outcome.failed


def record_success(
    settings: Settings, held: Lease, trainer: Trainer, metrics: dict[str, float]
) -> Outcome:
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
    return Outcome.succeeded


def _requeue_or_leave(
    settings: Settings, held: Lease, message: str, preempted: bool = False
) -> Outcome:
    """A new attempt for a job whose run a service failed; if the job database is the
    service that is away, the row cannot be written now: the job stays running, its
    heartbeat stops, and the reaper requeues it once the database is back."""
    try:
        status = requeue(settings, held, message, preempted)
    except Exception:
        logger.exception("job %s: not requeued; the reaper will", held.job_id)
        return Outcome.left_to_reaper
    # A status this attempt cannot end in (another attempt running it) means the row is
    # no longer this attempt's.
    known = {outcome.value for outcome in Outcome}
    return Outcome(status) if status in known else Outcome.lease_lost


@dataclass(frozen=True)
class RankReport:
    """What one rank of a several-device job says of its run: its recorded ``outcome``
    (rank 0 records a success or a cancellation itself), or the one-line ``message`` of
    its error and whether that was ``infrastructure``."""

    outcome: Outcome | None = None
    message: str | None = None
    infrastructure: bool = False

    @staticmethod
    def path(run_dir: Path, rank: int) -> Path:
        return run_dir / f".rank{rank}-outcome.json"

    def write(self, run_dir: Path, rank: int) -> None:
        RankReport.path(run_dir, rank).write_text(json.dumps(asdict(self)))

    @staticmethod
    def read(run_dir: Path, rank: int) -> RankReport | None:
        path = RankReport.path(run_dir, rank)
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        outcome = data.get("outcome")
        return RankReport(
            Outcome(outcome) if outcome is not None else None,
            data.get("message"),
            bool(data.get("infrastructure", False)),
        )

    @staticmethod
    def clear(run_dir: Path) -> None:
        for stale in run_dir.glob(".rank*-outcome.json"):
            stale.unlink()
