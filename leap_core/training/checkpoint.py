"""Checkpoints that carry everything needed to resume a run exactly.

A checkpoint holds the model, head, feature cloud, optimizer and AMP scaler states, the RNG
states of torch, numpy and Python, the epoch and step counters, the spec and the MLflow run
id. A one-process run writes it as one file, in the layout this module reads; a sharded run
writes one file per rank (:mod:`leap_core.training.checkpoint_shards`). Each file is written
to a temporary file and renamed into place, so a crash or a full disk
never leaves a truncated file where the last good checkpoint was. It loads with
``torch.load(weights_only=True)``: nothing in it can execute code.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

CHECKPOINT_VERSION = 1


def rng_states() -> dict[str, Any]:
    """Every random stream the run draws from, in a ``weights_only``-loadable form."""
    python_state: tuple[Any, ...] = random.getstate()
    numpy_state = cast(tuple[Any, ...], np.random.get_state())  # the legacy tuple form
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [python_state[0], list(python_state[1]), python_state[2]],
        "numpy": [
            numpy_state[0],
            torch.from_numpy(numpy_state[1].copy()),
            int(numpy_state[2]),
            int(numpy_state[3]),
            float(numpy_state[4]),
        ],
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class CheckpointWriteError(OSError):
    """The checkpoint could not be written; the message names the path and the cause (disk
    full, read-only file system, …) and the last good checkpoint is left as it was."""

    def __str__(self) -> str:
        return str(self.strerror) if self.strerror else super().__str__()


def write_atomically(path: Path, value: Any) -> Path:
    """``torch.save`` ``value`` to ``path`` through a temporary file renamed into place;
    raises :class:`CheckpointWriteError`.

    The value streams to the file (no second copy of a CPU tensor in memory; ``torch.save``
    copies each CUDA storage to the host in turn), and a full or read-only
    disk surfaces as the operating system's own error (``ENOSPC``, ``EROFS``) rather than
    as torch's opaque "file write failed"."""
    temporary: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
        with os.fdopen(handle, "wb") as file:
            torch.save(value, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
        fsync_directory(path.parent)  # the new name survives a power loss too
    except OSError as error:
        written = 0
        if temporary is not None:
            written = _size(Path(temporary))
            Path(temporary).unlink(missing_ok=True)
        raise CheckpointWriteError(
            error.errno,
            f"cannot write checkpoint {path} ({written} bytes written): {error.strerror or error}",
        ) from error
    except BaseException:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        raise
    return path


def fsync_directory(path: Path) -> None:
    """Make the names in folder ``path`` (a file renamed into it, one removed) durable."""
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def save_checkpoint(path: Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` atomically to ``path`` as a single-file checkpoint."""
    return write_atomically(path, {"version": CHECKPOINT_VERSION, **payload})


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors mapped to the CPU)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    # Mapped, not read: a resumed rank touches only its classes' rows of a large head.
    payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    if not isinstance(payload, dict) or payload.get("version") != CHECKPOINT_VERSION:
        raise ValueError(
            f"checkpoint {path} is not a LEAP checkpoint of version {CHECKPOINT_VERSION}"
        )
    return payload
