"""One rank of a job of several devices: ``python -m worker.rank_job ATTEMPT_FILE``.

Started by :mod:`worker.ranks` through torchrun's launcher. Every rank builds the same
trainer; rank 0 alone has the job's hooks (MLflow, the job row, cancellation) and records a
success or a cancellation. On a failure every rank writes its one-line reason beside the run
for the worker to record (the worker decides: another rank's error or death may be the real
cause).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import torch.distributed

from jobs.models import JobStatus
from jobs.settings import get_settings
from leap_core.config import parse_spec
from leap_core.training.trainer import Trainer, TrainingCancelled, resolve_device
from leap_core.training.world import init_from_environment
from worker.faults import describe, is_infrastructure
from worker.hooks import LeaseLost
from worker.lease import Lease, finish
from worker.ranks import OUTCOME_FILE
from worker.runner import job_hooks, record_success

logger = logging.getLogger(__name__)


def lost_a_peer(error: BaseException) -> bool:
    """Whether a collective failed because another rank went away (its own reason, if it
    had time to write one, is the job's; this one is only the echo)."""
    if isinstance(error, torch.distributed.DistError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and any(
        mark in text for mark in ("gloo", "NCCL", "Connection closed by peer", "Connection reset")
    )


def outcome_path(run_dir: Path, rank: int) -> Path:
    return run_dir / OUTCOME_FILE.format(rank=rank)


def main(attempt_file: str) -> int:
    held = Lease(**json.loads(Path(attempt_file).read_text()))
    settings = get_settings()
    spec = parse_spec(held.spec)
    ranks = init_from_environment(resolve_device(spec.train.device).type)
    rank = ranks.rank if ranks else 0
    run_dir = Path(held.run_dir)
    outcome = outcome_path(run_dir, rank)
    resume = run_dir / "last.pt"
    trainer = None
    try:
        trainer = Trainer(spec, run_dir, job_hooks(settings, held) if rank == 0 else [])
        metrics = trainer.fit(resume if resume.is_file() else None)
    except TrainingCancelled as error:
        if rank == 0:
            finish(settings, held, JobStatus.cancelled, f"{error}; last checkpoint kept")
            outcome.write_text(json.dumps({"status": JobStatus.cancelled.value}))
        return 0
    except LeaseLost as error:
        # Only rank 0 sees it; a failing exit makes the launcher stop the other ranks.
        logger.warning("%s", error)
        outcome.write_text(json.dumps({"status": "lease lost"}))
        return 3
    except Exception as error:
        logger.exception("rank %d of job %s failed", rank, held.job_id)
        device = str(trainer.device) if trainer is not None else spec.train.device
        report = {
            "message": describe(error, spec, device),
            "infrastructure": is_infrastructure(error) or lost_a_peer(error),
        }
        outcome.write_text(json.dumps(report))
        return 1
    if rank == 0:
        status = record_success(settings, held, trainer, metrics)
        outcome.write_text(json.dumps({"status": status}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
