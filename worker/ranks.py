"""A job of several devices (``resources.devices: N``): its ranks run as child processes.

The worker child holds N device locks (its own GPU and free ones beside it, or CPU slots on
a CPU-only machine; :func:`worker.gpu.claim_devices`), writes what the ranks need to know
about the attempt beside the run, and launches them through torchrun's launcher
(:mod:`leap_core.distributed.launch`): ``python -m worker.rank_job``. A rank that crashes
cannot take the worker down with it; the worker's heartbeat keeps the lease meanwhile.

Rank 0 reports progress, MLflow and the job row, and records a success or a cancellation
itself. A failure is recorded here, from the ranks' own reasons (their
:class:`~worker.outcome.RankReport`) and
what the launcher saw: an error of the job fails it; a rank's death ("rank 1 exited with
signal 9 (SIGKILL)") is an infrastructure failure: the job is requeued and its next attempt
resumes from the last checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path

from jobs.models import JobStatus
from jobs.settings import Settings
from leap_core.config import JobSpec
from leap_core.distributed.launch import RankFailed, run_ranks
from worker.gpu import claim_devices, is_gpu_worker, machine_devices, release
from worker.lease import Lease, cancel_requested, finish
from worker.outcome import Outcome, RankReport, record_failure

logger = logging.getLogger(__name__)

LEASE_FILE = ".attempt.json"
WAIT_SECONDS = 2.0


def run_on_devices(settings: Settings, held: Lease, spec: JobSpec) -> Outcome:
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
    RankReport.clear(run_dir)
    claimed = claim_devices(devices)
    waited = 0.0
    while claimed is None:  # all or nothing, so two waiting jobs never deadlock
        if cancel_requested(settings, held):  # a held job is cancelled at once
            finish(
                settings,
                held,
                JobStatus.cancelled,
                f"cancelled while waiting {waited:.0f} s for {devices} free devices",
            )
            return Outcome.cancelled
        logger.info("job %s waits for %d free devices", held.job_id, devices)
        time.sleep(WAIT_SECONDS)
        waited += WAIT_SECONDS
        claimed = claim_devices(devices)
    names, locks = claimed
    saved = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        if is_gpu_worker():  # the ranks see exactly the claimed GPUs
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(names)
        run_ranks(devices, "worker.rank_job", [str(run_dir / LEASE_FILE)])
    except RankFailed as error:
        return _record_rank_failure(settings, held, run_dir, devices, str(error))
    finally:
        if saved is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved
        release(locks)
    first = RankReport.read(run_dir, 0)
    return first.outcome if first is not None and first.outcome else Outcome.succeeded


def _reports(run_dir: Path, devices: int) -> dict[int, RankReport]:
    found = {rank: RankReport.read(run_dir, rank) for rank in range(devices)}
    return {rank: report for rank, report in found.items() if report is not None}


def _record_rank_failure(
    settings: Settings, held: Lease, run_dir: Path, devices: int, launcher: str
) -> Outcome:
    """Record a run whose ranks did not all succeed. A rank's own reason wins over the
    launcher's view (the first rank to exit is often one that only saw the others fail):
    an error of the job itself (a diverging loss, a missing file) fails it; otherwise the
    attempt failed for infrastructure (a rank killed, a lost peer) and is requeued."""
    reported = _reports(run_dir, devices)
    if 0 in reported and reported[0].outcome == Outcome.lease_lost:
        logger.warning("job %s attempt %d: lease lost", held.job_id, held.attempt)
        return Outcome.lease_lost
    if 0 in reported and reported[0].outcome is not None:
        # Rank 0 recorded how the run ended (a preemption: the launcher, told to stop,
        # stopped the ranks with SIGTERM and they checkpointed): that is the attempt's end.
        return reported[0].outcome
    failures = [(rank, r) for rank, r in sorted(reported.items()) if r.message is not None]
    for _rank, report in failures:
        if not report.infrastructure and report.message is not None:
            return record_failure(settings, held, report.message, infrastructure=False)
    message = launcher
    if failures:
        rank, report = failures[0]
        message = f"{launcher}; rank {rank}: {report.message}"
    return record_failure(settings, held, message, infrastructure=True)
