"""From a sweep row and its jobs to its public representation."""

from __future__ import annotations

from api.presenters.sweep_table import sweep_table
from api.schemas.sweeps import CellPublic, SweepCreate, SweepDetail, SweepLinks, SweepSummary
from jobs.models import Job, Sweep, SweepCell
from jobs.sweeps import status_counts, sweep_status, sweep_tag


def sweep_summary(sweep: Sweep, counts: dict[str, int]) -> SweepSummary:
    return SweepSummary(
        id=sweep.id,
        name=sweep.name,
        status=sweep_status(counts),
        created_at=sweep.created_at,
        tags=sweep.tags or [],
        priority=sweep.priority,
        counts=counts,
        links=SweepLinks(self=f"/v1/sweeps/{sweep.id}", jobs=f"/v1/jobs?tag={sweep_tag(sweep.id)}"),
    )


def sweep_detail(sweep: Sweep, cells: list[tuple[SweepCell, Job]]) -> SweepDetail:
    """Cells with their jobs' states, counts, and the table of the succeeded cells."""
    counts = status_counts([job.status for _cell, job in cells])
    definition = SweepCreate.model_validate(sweep.definition)
    public = [
        CellPublic(
            cell=cell.cell,
            labels={axis: label for axis, label in cell.labels},
            seed=cell.seed,
            job_id=job.id,
            status=job.status,
            metrics={k: float(v) for k, v in (job.metrics or {}).items()},
        )
        for cell, job in cells
    ]
    return SweepDetail(
        **sweep_summary(sweep, counts).model_dump(),
        cells=public,
        table=sweep_table(definition, cells, counts),
    )
