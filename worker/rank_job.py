"""One rank of a job of several devices: ``python -m worker.rank_job ATTEMPT_FILE``.

Started by :mod:`worker.ranks` through torchrun's launcher. Every rank builds the same
trainer; rank 0 alone has the job's hooks (MLflow, the job row, cancellation), records a
success or a cancellation, and on a failure writes its one-line reason for the worker to
record (the worker decides, since another rank's death may be the real cause).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from jobs.models import JobStatus
from jobs.settings import get_settings
from leap_core.config import parse_spec
from leap_core.training.distributed import init_from_environment
from leap_core.training.trainer import Trainer, TrainingCancelled, resolve_device
from worker.faults import describe, is_infrastructure
from worker.hooks import LeaseLost
from worker.lease import Lease, finish
from worker.ranks import OUTCOME_FILE
from worker.runner import job_hooks, record_success

logger = logging.getLogger(__name__)


def main(attempt_file: str) -> int:
    held = Lease(**json.loads(Path(attempt_file).read_text()))
    settings = get_settings()
    spec = parse_spec(held.spec)
    ranks = init_from_environment(resolve_device(spec.train.device).type)
    main_rank = ranks is None or ranks.main
    run_dir = Path(held.run_dir)
    outcome = run_dir / OUTCOME_FILE
    resume = run_dir / "last.pt"
    trainer = None
    try:
        trainer = Trainer(spec, run_dir, job_hooks(settings, held) if main_rank else [])
        metrics = trainer.fit(resume if resume.is_file() else None)
    except TrainingCancelled as error:
        if main_rank:
            finish(settings, held, JobStatus.cancelled, f"{error}; last checkpoint kept")
            outcome.write_text(json.dumps({"status": JobStatus.cancelled.value}))
        return 0
    except LeaseLost as error:
        logger.warning("%s", error)
        outcome.write_text(json.dumps({"status": "lease lost"}))
        return 0
    except Exception as error:
        logger.exception("rank %s of job %s failed", ranks.rank if ranks else 0, held.job_id)
        if main_rank:
            device = str(trainer.device) if trainer is not None else spec.train.device
            report = {
                "message": describe(error, spec, device),
                "infrastructure": is_infrastructure(error),
            }
            outcome.write_text(json.dumps(report))
        return 1
    if main_rank:
        status = record_success(settings, held, trainer, metrics)
        outcome.write_text(json.dumps({"status": status}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
