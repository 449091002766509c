"""Per-cell results on disk: one JSON file per finished cell, written atomically.

A sweep is resumable because a cell counts as finished exactly when its file exists: the file
is written to a temporary name and renamed into place, so an interrupted run never leaves a
half-written result that a later invocation would trust. The file records the cell's spec, so
a sweep edited since cannot silently mix old and new results.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from leap_core.sweeps.grid import Cell
from leap_core.sweeps.sweepfile import SweepError


@dataclass
class CellResult:
    """What one finished cell measured, and enough of its training set for the plots."""

    cell: str
    labels: dict[str, str]
    seed: int
    method: str  # the paper's label from the spec: CosFace, LEAP-CF, ...
    split: str  # "test" or "validation"
    spec: dict[str, Any]
    metrics: dict[str, float]
    wall_s: float
    class_counts: list[int] = field(default_factory=list)
    class_variance: list[float | None] = field(default_factory=list)  # rad², None: no stats
    head: list[bool] = field(default_factory=list)
    mlflow_run_id: str | None = None

    def variance_array(self) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in self.class_variance], dtype=float)


def _clean(value: Any) -> Any:
    """JSON has no NaN: non-finite floats become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_clean(item) for item in value]
    return value


def result_path(output: Path, cell: Cell) -> Path:
    return output / "cells" / f"{cell.id}.json"


def write_result(path: Path, result: CellResult) -> Path:
    """Write atomically: a temporary file in the same folder, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as stream:
            json.dump(_clean(asdict(result)), stream, indent=1, sort_keys=True)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def read_result(path: Path) -> CellResult:
    try:
        data = json.loads(path.read_text())
        metrics = {
            key: (math.nan if value is None else float(value))
            for key, value in data.pop("metrics").items()
        }
        return CellResult(metrics=metrics, **data)
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise SweepError(
            f"{path}: not a readable cell result ({error}); delete it to rerun the cell"
        ) from None


def finished_result(output: Path, cell: Cell) -> CellResult | None:
    """The cell's stored result, or None when it has not finished. A result produced by a
    different spec is an error: the sweep file changed under an existing output folder."""
    path = result_path(output, cell)
    if not path.is_file():
        return None
    result = read_result(path)
    if result.spec != cell.spec.model_dump(mode="json"):
        raise SweepError(
            f"{path}: this cell was run with a different spec; delete the file "
            f"to rerun it, or give the sweep another output folder"
        )
    return result


def results_by_arm(
    folder: Path, order: tuple[str, ...] = (), axis: str = "method"
) -> dict[str, dict[int, CellResult]]:
    """The finished cells of a sweep's output folder as arm label (the ``axis`` label, else
    the method's name) → seed → result; arms named in ``order`` first, the others after
    by name."""
    arms: dict[str, dict[int, CellResult]] = {}
    for path in sorted((folder / "cells").glob("*.json")):
        result = read_result(path)
        arms.setdefault(result.labels.get(axis, result.method), {})[result.seed] = result

    def rank(name: str) -> tuple[int, str]:
        return (order.index(name) if name in order else len(order), name)

    return {name: arms[name] for name in sorted(arms, key=rank)}


def per_seed(arm: dict[int, CellResult], key: str) -> dict[int, float]:
    """One metric of an arm, seed → value (NaN where the cell did not report it)."""
    return {seed: result.metrics.get(key, math.nan) for seed, result in arm.items()}
