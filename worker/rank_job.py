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

from jobs.settings import get_settings
from leap_core.config import parse_spec
from leap_core.training.trainer import resolve_device
from leap_core.training.world import init_from_environment, leave_process_group
from worker.hooks import job_hooks
from worker.lease import Lease
from worker.outcome import Outcome, RankReport, record, train

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


def main(attempt_file: str) -> int:
    held = Lease(**json.loads(Path(attempt_file).read_text()))
    settings = get_settings()
    spec = parse_spec(held.spec)
    ranks = init_from_environment(resolve_device(spec.train.device).type)
    rank = ranks.rank if ranks else 0
    run_dir = Path(held.run_dir)
    hooks = job_hooks(settings, held) if rank == 0 else []
    ended = train(spec, run_dir, hooks, held.job_id, peer_lost=lost_a_peer)
    if ended.kind == Outcome.lease_lost:
        # Only rank 0 sees it; a failing exit makes the launcher stop the other ranks.
        RankReport(Outcome.lease_lost).write(run_dir, rank)
        return 3
    if ended.kind == "error":
        RankReport(message=ended.message, infrastructure=ended.infrastructure).write(run_dir, rank)
        return 1
    if rank == 0:  # a success or a cancellation, the same on every rank: rank 0 records it
        RankReport(record(settings, held, ended)).write(run_dir, rank)
    leave_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
