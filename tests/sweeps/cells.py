"""Finished sweep cells for the report and table tests, written as a sweep writes them."""

from __future__ import annotations

from pathlib import Path

from leap_core.sweeps.results import CellResult, write_result


def finished_cell(
    labels: dict[str, str], seed: int, metrics: dict[str, float], folder: Path | None = None
) -> CellResult:
    """A cell's result with these axis labels (its method: the ``method`` label), written
    under ``folder/cells`` when a folder is given."""
    method = labels.get("method", "")
    name = "__".join(f"{axis}={label}" for axis, label in labels.items())
    result = CellResult(
        cell=f"{name.replace(' ', '-').replace('/', '-')}__seed{seed}",
        labels=labels,
        seed=seed,
        method=method,
        split="test",
        spec={},
        metrics=metrics,
        wall_s=1.0,
    )
    if folder is not None:
        write_result(folder / "cells" / f"{result.cell}.json", result)
    return result
