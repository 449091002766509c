"""From a submitted sweep to validated cells ready to become jobs.

The grid is expanded by ``leap_core.sweeps.expand``, the same code as ``leap sweep``, so a
sweep file gives the same cells locally and on the service. On top of that come the checks
that need the server: the base spec must be inline (a file name means nothing on the
server), every cell's data paths must resolve inside the allowed data roots (as for a
job), and the grid must not exceed ``LEAP_MAX_SWEEP_CELLS``. Every problem is raised as
:class:`~jobs.submission.Refused`, naming the field and the cell where it applies, before
anything is stored.
"""

from __future__ import annotations

import math
from typing import Any

from jobs.models import NAME_LENGTH
from jobs.settings import Settings
from jobs.submission import Problem, Refused, check_devices, confined_spec
from jobs.sweeps import PlannedCell
from leap_core.sweeps.grid import Cell, expand
from leap_core.sweeps.sweepfile import SweepError, SweepFile


def check_servable(sweep: SweepFile, settings: Settings) -> None:
    """What a local sweep may do but the service may not, refused with each field."""
    problems = []
    if not isinstance(sweep.base, dict):
        problems.append(
            Problem(
                ("base",),
                "must be the base job spec itself (a mapping) over HTTP: a file name "
                "means nothing on the server; inline the file's content (`leap sweep "
                "--remote` does this for you)",
                sweep.base,
            )
        )
    if sweep.validation is not None:
        problems.append(
            Problem(
                ("validation",),
                "validation splits are not run by the service's workers; run "
                "this sweep locally with `leap sweep`, or remove validation",
            )
        )
    size = math.prod(len(values) for values in sweep.axes.values()) * len(sweep.seeds)
    if size > settings.max_sweep_cells:
        problems.append(
            Problem(
                ("axes",),
                f"the grid has {size} cells (axes × seeds); the service takes at most "
                f"{settings.max_sweep_cells} per sweep (LEAP_MAX_SWEEP_CELLS)",
            )
        )
    if problems:
        raise Refused(problems)


def job_name(sweep_name: str, cell: Cell) -> str:
    """``tiny method=LEAP-CF seed0``-like: the sweep's name and what the cell is."""
    return f"{sweep_name} {cell.title()}"[:NAME_LENGTH]


def plan_cells(
    sweep: SweepFile, settings: Settings, overrides: dict[str, Any] | None = None
) -> list[PlannedCell]:
    """Every cell validated and its paths confined, in the order ``leap sweep`` runs them
    (seed by seed), or refused at the first invalid one."""
    check_servable(sweep, settings)
    try:
        # The base is inline (checked above), so the folder for a relative base is unused.
        grid = expand(sweep, settings.resolved_data_roots()[0], overrides)
    except SweepError as error:
        # A SweepError is one line, "where: problem"; for a cell, where is its axis labels
        # and seed, and the problem names the spec field and the value.
        where, sep, message = str(error).partition(": ")
        loc = (where,) if sep else ()
        raise Refused(
            [Problem(loc, message if sep else str(error), kind="invalid_sweep")]
        ) from None
    for cell in grid:
        check_devices(cell.spec.resources.devices, settings, ("cells", cell.id))
    return [
        PlannedCell(
            cell=cell.id,
            labels=cell.labels,
            seed=cell.seed,
            name=job_name(sweep.name, cell),
            spec=confined_spec(cell.spec.model_dump(mode="json"), settings, ("cells", cell.id)),
        )
        for cell in grid
    ]
