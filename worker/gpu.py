"""One job per GPU: each worker child claims a GPU of its own when it starts.

A child takes the first device whose lock file it can lock exclusively and exposes only
that device (``CUDA_VISIBLE_DEVICES``), before anything initialises CUDA. The lock goes
with the process, so a replacement child (``max_tasks_per_child``) takes the freed GPU.
With ``LEAP_WORKER_DEVICES_PER_CHILD=N`` a child takes N GPUs, for jobs of up to N
devices (``resources.devices``).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from celery.signals import worker_process_init

_held: list[int] = []  # file descriptors of the claimed locks, kept open for life
_machine: list[str] = []  # the GPUs this child could see before it pinned one


def visible_gpus() -> list[str]:
    """GPU ids this machine lets us use, without initialising CUDA in this process."""
    declared = os.environ.get("CUDA_VISIBLE_DEVICES")
    if declared is not None:
        return [part for part in declared.split(",") if part.strip() and part.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listing = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(listing.splitlines()) if line.startswith("GPU ")]


def default_lock_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"leap-gpu-locks-{os.getuid()}"


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def claim_gpu(gpus: list[str], lock_dir: Path | None = None, kind: str = "child") -> str | None:
    """Lock and return one of ``gpus``; None when all are taken (or there are none)."""
    lock_dir = lock_dir or default_lock_dir()
    lock_dir.mkdir(parents=True, exist_ok=True)
    for gpu in gpus:
        fd = _try_lock(lock_dir / f"{kind}-gpu-{gpu}.lock")
        if fd is not None:
            _held.append(fd)
            return gpu
    return None


def claim_devices(count: int, lock_dir: Path | None = None) -> tuple[list[str], list[int]] | None:
    """All or nothing: ``count`` devices for one job of several processes, as
    ``(devices, locks)``, or None when this process cannot have them now.

    On a GPU machine they are this child's own GPUs (``LEAP_WORKER_DEVICES_PER_CHILD`` of
    them, pinned for the child's life), so no lock is needed. On a CPU-only machine they are
    CPU slots, one per core, locked for the job (release with :func:`release`)."""
    if _machine:
        own = own_gpus()
        return (own[:count], []) if len(own) >= count else None
    lock_dir = lock_dir or default_lock_dir()
    lock_dir.mkdir(parents=True, exist_ok=True)
    devices: list[str] = []
    locks: list[int] = []
    for slot in range(os.cpu_count() or 1):
        if len(devices) == count:
            break
        fd = _try_lock(lock_dir / f"cpu-slot-{slot}.lock")
        if fd is not None:
            locks.append(fd)
            devices.append(str(slot))
    if len(devices) < count:
        release(locks)
        return None
    return devices, locks


def is_gpu_worker() -> bool:
    """Whether this child pinned GPUs at start-up (else it trains on CPUs)."""
    return bool(_machine)


def own_gpus() -> list[str]:
    """The GPUs this child pinned."""
    return [gpu for gpu in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if gpu.strip()]


def devices_per_child() -> int:
    """GPUs each worker child holds (``LEAP_WORKER_DEVICES_PER_CHILD``, default 1): the
    largest ``resources.devices`` a job on this worker can have."""
    wanted = os.environ.get("LEAP_WORKER_DEVICES_PER_CHILD", "1")
    if not wanted.isdigit() or int(wanted) < 1:
        raise SystemExit(
            f"LEAP_WORKER_DEVICES_PER_CHILD must be a positive integer, got {wanted!r}"
        )
    return int(wanted)


def release(locks: list[int]) -> None:
    for fd in locks:
        os.close(fd)


def machine_devices() -> int:
    """How many devices a job here can have: this child's GPUs, or the cores of a CPU
    machine."""
    return len(own_gpus()) if _machine else (os.cpu_count() or 1)


def claim_for_worker(gpus: list[str], wanted: str, lock_dir: Path) -> list[str]:
    """The GPUs this worker process takes when several workers share a machine
    (``LEAP_WORKER_GPUS=N`` with a lock folder shared by them): N free ones, or all."""
    if wanted in ("", "all"):
        return gpus
    count = int(wanted)
    claimed: list[str] = []
    while len(claimed) < count:
        gpu = claim_gpu([g for g in gpus if g not in claimed], lock_dir, kind="worker")
        if gpu is None:
            break
        claimed.append(gpu)
    if not claimed and gpus:
        raise SystemExit(
            f"LEAP_WORKER_GPUS={wanted}: every GPU of {gpus} is taken by other "
            f"workers (locks in {lock_dir})"
        )
    return claimed


@worker_process_init.connect
def pin_child_to_gpu(**_kwargs: Any) -> None:
    gpus = visible_gpus()
    if not gpus:
        # No GPU: the child trains on the CPU, one of several (one per core), so it uses one
        # thread; several single-threaded jobs make better use of a small machine than one
        # job whose threads wait on each other.
        import torch

        torch.set_num_threads(1)
        return
    _machine[:] = gpus
    claimed: list[str] = []
    for _ in range(devices_per_child()):
        gpu = claim_gpu([g for g in gpus if g not in claimed])
        if gpu is not None:
            claimed.append(gpu)
    # More children than GPUs is a misconfiguration; hide all GPUs rather than share one.
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(claimed)
