"""``python -m worker [celery worker options]``: a worker sized to this machine.

One Celery child per GPU (per ``LEAP_WORKER_DEVICES_PER_CHILD`` GPUs, for jobs of several
devices), each pinned to its own devices, so one job runs per child; on a
machine without GPUs, one child per CPU core (``LEAP_WORKER_CPU_JOBS`` to choose), each
training on one thread. The GPUs are all visible ones, or
with ``LEAP_WORKER_GPUS=N`` N of them not taken by another worker on this machine (lock
files in ``LEAP_GPU_LOCK_DIR``, shared by the workers). Extra options go to
``celery worker`` and win over these defaults.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from worker.app import app, settings
from worker.gpu import claim_for_worker, devices_per_child, visible_gpus


def pool_size(gpus: list[str], cpu_jobs: str | None, cores: int | None, per_child: int = 1) -> int:
    """Jobs at once: one per ``per_child`` GPUs; without GPUs, ``LEAP_WORKER_CPU_JOBS`` or
    one per core."""
    if gpus:
        return max(1, len(gpus) // per_child)
    if cpu_jobs:
        if not cpu_jobs.isdigit() or int(cpu_jobs) < 1:
            raise SystemExit(f"LEAP_WORKER_CPU_JOBS must be a positive integer, got {cpu_jobs!r}")
        return int(cpu_jobs)
    return max(1, cores or 1)


def main(argv: list[str]) -> None:
    lock_dir = Path(os.environ.get("LEAP_GPU_LOCK_DIR") or tempfile.gettempdir())
    gpus = claim_for_worker(visible_gpus(), os.environ.get("LEAP_WORKER_GPUS", "all"), lock_dir)
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)  # the children choose among these
    size = pool_size(
        gpus, os.environ.get("LEAP_WORKER_CPU_JOBS"), os.cpu_count(), devices_per_child()
    )
    options = [
        "worker",
        f"--queues={settings.queue}",
        "--pool=prefork",
        f"--concurrency={size}",
        "--loglevel=INFO",
        "--without-gossip",
        "--without-mingle",
    ]
    print(
        f"leap worker: {len(gpus) or 'no'} GPU(s) visible, {size} job(s) at once; "
        f"queue {settings.queue!r}",
        file=sys.stderr,
    )
    app.worker_main([*options, *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
