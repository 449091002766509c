"""A sweep's results table from its jobs, in the paper's format.

The table itself is ``leap_core.sweeps.table`` (the code behind ``leap sweep``'s
``results.md``); this module only adapts what the service has (the cell rows and the final
metrics of their succeeded jobs) into the ``CellResult`` records that code groups, and the
table's ``Row`` objects into JSON. Only succeeded jobs enter the table: the latest metrics
of a running job are mid-training numbers, and a failed job has none worth averaging.
"""

from __future__ import annotations

import math

from api.schemas.sweeps import RowPublic, SpreadPublic, SweepCreate, TablePublic
from jobs.models import Job, JobStatus, SweepCell
from leap_core.config import parse_spec
from leap_core.run_names import method_label
from leap_core.sweeps.results import CellResult
from leap_core.sweeps.table import Row, Spread, build_rows, to_markdown


def cell_result(cell: SweepCell, job: Job) -> CellResult:
    """A succeeded job's outcome as the record a local sweep writes for a finished cell
    (without the per-class statistics, which only the plots use)."""
    wall = (
        (job.finished_at - job.started_at).total_seconds()
        if job.finished_at and job.started_at
        else math.nan
    )
    return CellResult(
        cell=cell.cell,
        labels={axis: label for axis, label in cell.labels},
        seed=cell.seed,
        method=method_label(parse_spec(job.spec)),
        split="test",
        spec=job.spec,
        metrics={key: float(value) for key, value in (job.metrics or {}).items()},
        wall_s=wall,
        mlflow_run_id=job.mlflow_run_id,
    )


def _spread(spread: Spread) -> SpreadPublic:
    def number(value: float) -> float | None:
        return None if math.isnan(value) else value

    return SpreadPublic(mean=number(spread.mean), std=number(spread.std), n=spread.n)


def row_public(row: Row) -> RowPublic:
    return RowPublic(
        setting=dict(row.setting),
        method=row.method,
        paper_method=row.paper_method,
        seeds=row.seeds,
        metrics={name: _spread(spread) for name, spread in row.stats.items()},
        baseline=row.baseline,
        delta={name: _spread(spread) for name, spread in row.delta.items()},
    )


def _note(in_table: int, counts: dict[str, int]) -> str:
    total = sum(counts.values())
    if in_table == total:
        return f"complete: all {total} cells succeeded"
    waiting = {state: n for state, n in counts.items() if n and state != JobStatus.succeeded}
    shown = ", ".join(f"{n} {state}" for state, n in waiting.items())
    return (
        f"partial: {in_table} of {total} cells succeeded ({shown}); rows and deltas "
        f"cover the succeeded cells only"
    )


def sweep_table(
    definition: SweepCreate, cells: list[tuple[SweepCell, Job]], counts: dict[str, int]
) -> TablePublic:
    """The table over the succeeded cells, labelled complete only when that is all of
    them."""
    results = [cell_result(cell, job) for cell, job in cells if job.status == JobStatus.succeeded]
    rows = build_rows(
        results, definition.method_axis, definition.baselines, tuple(definition.metrics)
    )
    return TablePublic(
        complete=len(results) == len(cells),
        note=_note(len(results), counts),
        cells_in_table=len(results),
        cells=len(cells),
        rows=[row_public(row) for row in rows],
        markdown=to_markdown(rows) if rows else "",
    )
