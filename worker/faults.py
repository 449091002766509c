"""One line that says why a training job failed, precisely enough to act on.

A worker that only wrote ``RuntimeError: …`` would leave the user to read a traceback in
the worker's log. Faults a GPU service meets every week get a named reason and what to
change: memory, unreadable data, a dataset that is gone, a disk that refuses the
checkpoint, a diverged loss. Anything else keeps its type and message.
"""

from __future__ import annotations

import errno
from pathlib import Path

from jobs.retry import is_transient
from leap_core.config import JobSpec
from leap_core.data.records import DatasetError
from leap_core.tracking.retry import TrackingUnavailable
from leap_core.training.checkpoint import CheckpointWriteError
from leap_core.training.trainer import NonFiniteLoss

_MEMORY_WORDS = (
    "out of memory",
    "not enough memory",
    "can't allocate memory",
    "cannot allocate memory",
)
_DISK_ERRNOS = {
    errno.ENOSPC: "disk full",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "not permitted",
    errno.EDQUOT: "disk quota exceeded",
}
LIMIT = 4000


def _first_line(error: BaseException) -> str:
    """The message without a DataLoader worker's embedded traceback."""
    text = str(error).strip()
    if "Original Traceback" in text:  # re-raised from a DataLoader worker process
        text = text.rsplit("\n", 1)[-1].split(": ", 1)[-1]
    return text.splitlines()[0] if text else type(error).__name__


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, MemoryError):
        return True
    name = type(error).__name__
    return name == "OutOfMemoryError" or (
        isinstance(error, RuntimeError) and any(w in str(error).lower() for w in _MEMORY_WORDS)
    )


def missing_dataset_root(spec: JobSpec) -> Path | None:
    """The dataset root when the spec names one that is not there (synthetic data is
    regenerated instead, so its root may be absent)."""
    if spec.dataset.root is None or spec.dataset.format == "synthetic":
        return None
    root = Path(spec.dataset.root)
    return None if root.exists() else root


def is_infrastructure(error: BaseException) -> bool:
    """Whether the run failed because a service it needs was away (the tracking store past
    its retry window, the job database) rather than because of the spec, the data or the
    training itself. Such a job is not at fault: it is requeued as a new attempt, as for a
    lost worker."""
    return isinstance(error, TrackingUnavailable) or is_transient(error)


def describe(error: BaseException, spec: JobSpec | None, device: str = "") -> str:
    """The job's failure reason for ``error`` (one line, at most :data:`LIMIT` characters)."""
    detail = _first_line(error)
    if isinstance(error, TrackingUnavailable):
        reason = str(error)  # names the store, the window and the error already
    elif isinstance(error, NonFiniteLoss):
        reason = f"training diverged: {detail}"
    elif is_out_of_memory(error):
        where = f" on {device}" if device else ""
        reason = (
            f"out of memory{where}: {detail}; lower train.batch_size (the sampler's "
            f"identities × instances), dataset.image_size or model.embedding_dim"
        )
    elif isinstance(error, CheckpointWriteError):
        reason = f"checkpoint not saved: {error.strerror or detail}"
    elif spec is not None and (root := missing_dataset_root(spec)) is not None:
        reason = (
            f"dataset root {root} no longer exists (it was removed or unmounted "
            f"after the job was submitted): {type(error).__name__}: {detail}"
        )
    elif isinstance(error, DatasetError) or type(error).__name__ == "DatasetError":
        reason = f"unreadable dataset: {detail}"
    elif isinstance(error, OSError) and error.errno in _DISK_ERRNOS:
        reason = f"{_DISK_ERRNOS[error.errno]}: {detail}"
    else:
        reason = f"{type(error).__name__}: {detail}"
    return reason[:LIMIT]
