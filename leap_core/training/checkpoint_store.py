"""Where a run's checkpoint is, and reading it in either form.

A one-process run writes ``last.pt`` (:mod:`leap_core.training.checkpoint`); a sharded run
writes ``last.shards`` (:mod:`leap_core.training.checkpoint_shards`). Whoever reads one (a
resumed run of any world size, ``leap eval``, ``leap embed``, ``leap export``, a sweep
looking for an interrupted cell) opens it with :func:`open_checkpoint` and asks for what it
needs: the common part (spec, backbone, counters), the rows of a range of classes, a rank's
streams, or the whole payload in the single-file layout (:func:`consolidate`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any, Protocol

from leap_core.training.checkpoint import load_checkpoint, save_checkpoint
from leap_core.training.checkpoint_rows import Rows, split_payload
from leap_core.training.checkpoint_shards import (
    MANIFEST,
    SHARDED_NAME,
    ShardedCheckpoint,
    complete_generation,
)

#: A one-process run's checkpoint file.
SINGLE_NAME = "last.pt"


class Checkpoint(Protocol):
    """What a resumed run and the model commands read from a checkpoint of either form."""

    path: Path
    world_size: int
    num_classes: int

    @property
    def common(self) -> dict[str, Any]: ...

    def rank_state(self, rank: int) -> dict[str, Any]: ...

    def rows(self, start: int, stop: int, P: float | None) -> Rows: ...

    def payload(self) -> dict[str, Any]: ...


class FileCheckpoint:
    """A single-file checkpoint (memory-mapped: rows are read only where they are sliced)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._payload = load_checkpoint(self.path)
        if "head" not in self._payload:
            raise ValueError(
                f"{self.path} is one file of a sharded checkpoint: give its folder "
                f"({SHARDED_NAME} or the run folder)"
            )
        self._common, self._rows = split_payload(self._payload)
        self.world_size = int((self._payload.get("distributed") or {}).get("world_size", 1))
        self.num_classes = self._rows.stop

    @property
    def common(self) -> dict[str, Any]:
        return self._common

    def rank_state(self, rank: int) -> dict[str, Any]:
        saved = self._payload.get("distributed") or {}
        rngs = saved.get("rng") or [self._payload["rng"]]
        generators = saved.get("cloud_generators") or []
        return {
            "rng": rngs[rank],
            "cloud_generator": generators[rank] if rank < len(generators) else None,
        }

    def rows(self, start: int, stop: int, P: float | None) -> Rows:
        return self._rows.slice(start, stop, P)

    def payload(self) -> dict[str, Any]:
        return self._payload


def open_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """The checkpoint at ``path``: a ``last.pt`` file, a ``last.shards`` folder (its newest
    complete generation) or one generation of it, or a run folder holding either."""
    path = Path(path)
    if path.is_file():
        return FileCheckpoint(path)
    if path.is_dir():
        found = latest_checkpoint(path) if not _is_sharded(path) else path
        if found is not None:
            return FileCheckpoint(found) if found.is_file() else ShardedCheckpoint(found)
        raise FileNotFoundError(
            f"{path} holds no complete checkpoint ({SINGLE_NAME}, or {SHARDED_NAME} with a "
            f"generation whose {MANIFEST} names every file)"
        )
    raise FileNotFoundError(f"checkpoint {path} does not exist")


def _is_sharded(path: Path) -> bool:
    return path.name == SHARDED_NAME or (path / MANIFEST).exists()


def latest_checkpoint(run_dir: str | os.PathLike[str]) -> Path | None:
    """The run's newest complete checkpoint: ``last.pt`` or a ``last.shards`` generation
    (a run resumed at another world size may briefly have both), or ``None``."""
    run_dir = Path(run_dir)
    single = run_dir / SINGLE_NAME
    found = [single] if single.is_file() else []
    generation = complete_generation(run_dir / SHARDED_NAME)
    if generation is not None:
        found.append(generation)
    if not found:
        return None
    return max(found, key=lambda path: _written_at(path))


def _written_at(path: Path) -> float:
    return (path / MANIFEST if path.is_dir() else path).stat().st_mtime


def run_dir_of(checkpoint: str | os.PathLike[str]) -> Path:
    """The run folder a checkpoint path (as :func:`open_checkpoint` takes it) belongs to:
    where the run's next checkpoint goes."""
    path = Path(checkpoint)
    if path.is_file() or path.name == SHARDED_NAME:
        return path.parent
    if (path / MANIFEST).exists() and path.parent.name == SHARDED_NAME:
        return path.parent.parent
    return path


def remove_other_form(run_dir: Path, written: Path) -> None:
    """After ``written`` is complete, remove the run's checkpoint of the other form (left
    by an earlier attempt at another world size), so that one checkpoint is the run's."""
    if written.name == SINGLE_NAME:
        shutil.rmtree(run_dir / SHARDED_NAME, ignore_errors=True)
    else:  # best effort: a leftover is older, and latest_checkpoint passes it by
        with contextlib.suppress(OSError):
            (run_dir / SINGLE_NAME).unlink(missing_ok=True)


def consolidate(source: Checkpoint, target: str | os.PathLike[str]) -> Path:
    """Write ``source`` as one file at ``target``, in the layout a one-process run writes
    (every class's rows in memory at once)."""
    payload = dict(source.payload())
    payload.pop("version", None)
    return save_checkpoint(Path(target), payload)
