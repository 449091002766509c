"""A job of several devices (``resources.devices: N``): its ranks run as child processes.

The worker child holds N device locks (its own GPU and free ones beside it, or CPU slots on
a CPU-only machine; :func:`worker.gpu.claim_devices`), writes what the ranks need to know
about the attempt beside the run, and launches them through torchrun's launcher
(:mod:`leap_core.distributed.launch`): ``python -m worker.rank_job``. A rank that crashes
cannot take the worker down with it; the worker's heartbeat keeps the lease meanwhile.

Rank 0 reports progress, MLflow and the job row, and records a success or a cancellation
itself. A failure is recorded here, from what the launcher saw first: rank 0's own error
(written to :data:`OUTCOME_FILE`), or another rank's death ("rank 1 exited with signal 9
(SIGKILL)"), which is an infrastructure failure: the job is requeued and its next attempt
resumes from the last checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path

from jobs.settings import Settings
from leap_core.config import JobSpec
from leap_core.distributed.launch import RankFailed, run_ranks
from worker.gpu import claim_devices, machine_devices, release
from worker.lease import Lease
from worker.runner import record_failure

logger = logging.getLogger(__name__)

LEASE_FILE = ".attempt.json"
OUTCOME_FILE = ".rank0-outcome.json"
WAIT_SECONDS = 2.0


def run_on_devices(settings: Settings, held: Lease, spec: JobSpec) -> str:
    """Train ``held``'s job on ``spec.resources.devices`` processes; returns its status."""
    devices = spec.resources.devices
    if devices > machine_devices():
        message = (
            f"resources.devices is {devices} but this worker's processes hold "
            f"{machine_devices()} devices each (LEAP_WORKER_DEVICES_PER_CHILD on GPU "
            f"machines); LEAP_MAX_DEVICES_PER_JOB must not exceed it"
        )
        return record_failure(settings, held, message, infrastructure=False)
    run_dir = Path(held.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / LEASE_FILE).write_text(json.dumps(asdict(held)))
    outcome = run_dir / OUTCOME_FILE
    outcome.unlink(missing_ok=True)
    claimed = claim_devices(devices)
    while claimed is None:  # all or nothing, so two waiting jobs never deadlock
        logger.info("job %s waits for %d free devices", held.job_id, devices)
        time.sleep(WAIT_SECONDS)
        claimed = claim_devices(devices)
    names, locks = claimed
    saved = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        if saved is not None:  # a GPU worker: the ranks see exactly the claimed GPUs
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(names)
        run_ranks(devices, "worker.rank_job", [str(run_dir / LEASE_FILE)])
    except RankFailed as error:
        failed_rank = str(error).split()[1]
        if failed_rank == "0" and outcome.is_file():
            reported = json.loads(outcome.read_text())
            return record_failure(
                settings, held, reported["message"], bool(reported["infrastructure"])
            )
        return record_failure(settings, held, str(error), infrastructure=True)
    finally:
        if saved is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved
        release(locks)
    if outcome.is_file():
        return str(json.loads(outcome.read_text()).get("status", "succeeded"))
    return "succeeded"
