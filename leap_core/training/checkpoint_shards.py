"""Sharded checkpoints: every rank writes its own classes, no rank holds the whole head.

A sharded run's checkpoint is a folder (``last.shards``) of *generations*, one per save::

    last.shards/000012/
        common.pt                     rank 0: spec, backbone, counters, optimizer's other state
        rank-00000-of-00004.pt        each rank: its classes' rows, its RNG and draw streams
        ...
        manifest.json                 written last, once every file above is on disk

A generation is complete only when its manifest exists and names every file at its size, so
a save cut short (a killed rank, a full disk) is never taken for a checkpoint: the reader
skips it and the previous generation stays the run's checkpoint until a new one is
complete, when rank 0 removes the older ones. Reading reshards: the rows of any class range
come from the rank files that overlap it, memory-mapped, so a rank of any world size reads
only its own classes (:class:`ShardedCheckpoint`).

Per-rank files rather than ``torch.distributed.checkpoint``: DCP reshards ``Shard(0)``
DTensors split as ``torch.chunk`` splits them, not as the class shards do (the first
``C mod N`` ranks one class more), and the feature cloud's angle memories are ragged (each
class ``ceil(K_i × P)`` slots), which no even row split describes. Here each rank's share is
written exactly once, under its own file name.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from leap_core.distributed.shard import ClassShard
from leap_core.training.checkpoint import (
    CHECKPOINT_VERSION,
    CheckpointWriteError,
    fsync_directory,
    write_atomically,
)
from leap_core.training.checkpoint_rows import Rows, join_payload

#: The folder a sharded run's checkpoints go to, beside a one-process run's ``last.pt``.
SHARDED_NAME = "last.shards"
MANIFEST = "manifest.json"
COMMON = "common.pt"
FORMAT = "leap-sharded-checkpoint"


def rank_file(rank: int, world_size: int) -> str:
    return f"rank-{rank:05d}-of-{world_size:05d}.pt"


def _generations(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    found = [path for path in root.iterdir() if path.is_dir() and path.name.isdigit()]
    return sorted(found, key=lambda path: int(path.name))


def write_shards(
    root: Path,
    common: dict[str, Any] | None,
    rows: Rows,
    rank_state: dict[str, Any],
    shard: ClassShard,
) -> Path:
    """Write this rank's ``rows`` and ``rank_state`` (and, on rank 0, ``common``) as a new
    generation under ``root``; returns the generation's folder. Every rank calls it.

    Every step ends in a collective that carries each rank's outcome, so a failure on any
    rank (a full disk, a folder another machine does not see, an error while serialising)
    raises :class:`CheckpointWriteError` on every rank, none left waiting; the incomplete
    generation is removed and the previous one kept."""
    name, failure = None, None
    if shard.main:
        try:
            name = _next_name(root)
        except OSError as error:
            failure = f"rank 0: cannot list {root}: {_reason(error)}"
    name, failure = shard.gather_objects((name, failure))[0]
    if failure is not None:
        raise CheckpointWriteError(None, f"checkpoint not written: {failure}")
    generation = root / name
    sizes, own = _write_own_files(generation, common, rows, rank_state, shard)
    reports = shard.gather_objects(sizes if own is None else f"rank {shard.rank}: {_reason(own)}")
    errors = [report for report in reports if isinstance(report, str)]
    if errors:
        if shard.main:
            shutil.rmtree(generation, ignore_errors=True)
        raise CheckpointWriteError(
            None, f"checkpoint {generation} not complete: {'; '.join(errors)}"
        ) from own
    if shard.main:
        files = {name: size for report in reports for name, size in report.items()}
        errors = _complete(root, generation, shard, common or {}, files)
    errors = shard.gather_objects(errors if shard.main else [])[0]
    if errors:
        raise CheckpointWriteError(None, "; ".join(errors))
    return generation


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError):
        return str(error.strerror or error)
    return f"{type(error).__name__}: {error}"


def _write_own_files(
    generation: Path,
    common: dict[str, Any] | None,
    rows: Rows,
    rank_state: dict[str, Any],
    shard: ClassShard,
) -> tuple[dict[str, int], Exception | None]:
    """This rank's file (and rank 0's common file), with their sizes; or the error."""
    written: dict[str, int] = {}
    try:
        generation.mkdir(parents=True, exist_ok=True)
        payload: dict[str, Any] = {
            "version": CHECKPOINT_VERSION,
            "start": rows.start,
            "stop": rows.stop,
            "rows": rows.tensors(),
            **rank_state,
        }
        name = rank_file(shard.rank, shard.world_size)
        written[name] = write_atomically(generation / name, payload).stat().st_size
        if common is not None:
            common_file = write_atomically(
                generation / COMMON, {"version": CHECKPOINT_VERSION, **common}
            )
            written[COMMON] = common_file.stat().st_size
    except Exception as error:  # any failure: the other ranks must hear of it, not wait
        return written, error
    return written, None


def _complete(
    root: Path,
    generation: Path,
    shard: ClassShard,
    common: dict[str, Any],
    files: dict[str, int],
) -> list[str]:
    """Rank 0: check it sees every rank's file as written, then write the manifest and
    retire the older generations; returns the errors (none when complete)."""
    unseen = [
        name
        for name, size in sorted(files.items())
        if not (generation / name).is_file() or (generation / name).stat().st_size != size
    ]
    if unseen:
        shutil.rmtree(generation, ignore_errors=True)
        return [
            f"rank 0 does not see {', '.join(unseen)} in {generation} as the ranks wrote them: "
            f"the run folder must be one folder shared by every rank's machine"
        ]
    try:
        fsync_directory(generation)  # the rank files' names are durable before the manifest
        _write_manifest(generation, shard, common, files)
        fsync_directory(generation)
        fsync_directory(root)
    except OSError as error:
        shutil.rmtree(generation, ignore_errors=True)
        return [f"rank 0: cannot write {generation / MANIFEST}: {_reason(error)}"]
    for older in _generations(root):
        if older != generation:
            shutil.rmtree(older, ignore_errors=True)
    return []


def _next_name(root: Path) -> str:
    existing = [int(path.name) for path in _generations(root)]
    return f"{max(existing, default=0) + 1:06d}"


def _write_manifest(
    generation: Path, shard: ClassShard, common: dict[str, Any], files: dict[str, int]
) -> None:
    manifest = {
        "format": FORMAT,
        "version": CHECKPOINT_VERSION,
        "world_size": shard.world_size,
        "num_classes": shard.num_classes,
        "bounds": shard.bounds(),
        "epoch": common.get("epoch"),
        "global_step": common.get("global_step"),
        "files": files,
    }
    temporary = generation / f".{MANIFEST}.partial"
    with open(temporary, "w") as file:
        json.dump(manifest, file, indent=1)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, generation / MANIFEST)


def complete_generation(path: Path) -> Path | None:
    """The newest complete generation at ``path`` (a ``last.shards`` folder, or one of its
    generations), or ``None``."""
    candidates = [path] if (path / MANIFEST).exists() else list(reversed(_generations(path)))
    for generation in candidates:
        if _is_complete(generation):
            return generation
    return None


def _is_complete(generation: Path) -> bool:
    try:
        manifest = json.loads((generation / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    files = manifest.get("files", {})
    world_size = manifest.get("world_size", 0)
    expected = {COMMON, *(rank_file(rank, world_size) for rank in range(world_size))}
    return (
        manifest.get("format") == FORMAT
        and set(files) == expected
        and all(
            (generation / name).is_file() and (generation / name).stat().st_size == size
            for name, size in files.items()
        )
    )


def _load(path: Path) -> dict[str, Any]:
    payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    if not isinstance(payload, dict) or payload.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path} is not part of a LEAP checkpoint of version {CHECKPOINT_VERSION}")
    return payload


class ShardedCheckpoint:
    """A complete generation of a sharded checkpoint, read lazily: the common part on first
    use, a rank's file only when its classes or its streams are asked for (memory-mapped)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        path = Path(path)
        generation = complete_generation(path)
        if generation is None:
            raise FileNotFoundError(
                f"{path} holds no complete sharded checkpoint (a save that was cut short has "
                f"no {MANIFEST}, or a file of a different size than it names)"
            )
        self.path = generation
        manifest = json.loads((generation / MANIFEST).read_text())
        self.world_size = int(manifest["world_size"])
        self.num_classes = int(manifest["num_classes"])
        self.bounds = [(int(start), int(stop)) for start, stop in manifest["bounds"]]
        self._common: dict[str, Any] | None = None
        self._ranks: dict[int, dict[str, Any]] = {}

    @property
    def common(self) -> dict[str, Any]:
        if self._common is None:
            self._common = _load(self.path / COMMON)
        return self._common

    def rank(self, rank: int) -> dict[str, Any]:
        """Rank ``rank``'s file: ``start``, ``stop``, ``rows`` and its streams."""
        if rank not in self._ranks:
            self._ranks[rank] = _load(self.path / rank_file(rank, self.world_size))
        return self._ranks[rank]

    def rank_state(self, rank: int) -> dict[str, Any]:
        """Rank ``rank``'s RNG states (``rng``) and cloud draw generator (``cloud_generator``)."""
        saved = self.rank(rank)
        return {"rng": saved["rng"], "cloud_generator": saved.get("cloud_generator")}

    def rows(self, start: int, stop: int, P: float | None) -> Rows:
        """Classes ``start .. stop - 1``, from the rank files that hold them."""
        parts = []
        for rank, (first, last) in enumerate(self.bounds):
            if first < stop and start < last:
                saved = Rows.from_tensors(first, last, self.rank(rank)["rows"])
                parts.append(saved.slice(max(start, first), min(stop, last), P))
        return Rows.concat(parts)

    def payload(self) -> dict[str, Any]:
        """The whole checkpoint in the single-file layout (every class's rows in memory)."""
        common = dict(self.common)
        common.pop("version", None)
        states = [self.rank_state(rank) for rank in range(self.world_size)]
        common["rng"] = states[0]["rng"]
        common["distributed"] = {
            **(common.get("distributed") or {}),
            "world_size": self.world_size,
            "rng": [state["rng"] for state in states],
            "cloud_generators": [state["cloud_generator"] for state in states],
        }
        parts = [
            Rows.from_tensors(first, last, self.rank(rank)["rows"])
            for rank, (first, last) in enumerate(self.bounds)
        ]
        return join_payload(common, Rows.concat(parts))
