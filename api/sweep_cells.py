"""From a submitted sweep to validated cells ready to become jobs.

The grid is expanded by ``leap_core.sweeps.expand``, the same code as ``leap sweep``, so a
sweep file gives the same cells locally and on the service. On top of that come the checks
that need the server: the base spec must be inline (a file name means nothing on the
server), every cell's data paths must resolve inside the allowed data roots (as for
``POST /v1/jobs``), and the grid must not exceed ``LEAP_MAX_SWEEP_CELLS``. Every problem is
raised as a 422 naming the field, and the cell where it applies, before anything is stored.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi.exceptions import RequestValidationError

from api.sweep_schemas import SweepCreate
from api.validation import check_paths, resolved_spec
from jobs.models import NAME_LENGTH
from jobs.settings import Settings
from jobs.sweeps import PlannedCell
from leap_core.sweeps.grid import Cell, expand
from leap_core.sweeps.sweepfile import SweepError


def _problem(field: str, message: str, value: Any = None) -> dict[str, Any]:
    problem: dict[str, Any] = {"type": "value_error", "loc": ("body", field), "msg": message}
    if value is not None:
        problem["input"] = value
    return problem


def check_servable(body: SweepCreate, settings: Settings) -> None:
    """What a local sweep may do but the service may not, as one 422 listing each field."""
    errors = []
    if not isinstance(body.base, dict):
        errors.append(
            _problem(
                "base",
                "must be the base job spec itself (a mapping) over HTTP: a file name "
                "means nothing on the server; inline the file's content (`leap sweep "
                "--remote` does this for you)",
                body.base,
            )
        )
    if body.validation is not None:
        errors.append(
            _problem(
                "validation",
                "validation splits are not run by the service's workers; run "
                "this sweep locally with `leap sweep`, or remove validation",
            )
        )
    size = math.prod(len(values) for values in body.axes.values()) * len(body.seeds)
    if size > settings.max_sweep_cells:
        errors.append(
            _problem(
                "axes",
                f"the grid has {size} cells (axes × seeds); the service takes at most "
                f"{settings.max_sweep_cells} per sweep (LEAP_MAX_SWEEP_CELLS)",
            )
        )
    if errors:
        raise RequestValidationError(errors)


def _check_cell_paths(cell: Cell, settings: Settings) -> None:
    """:func:`api.validation.check_paths` with the cell's id put in front of each field."""
    try:
        check_paths(cell.spec, settings)
    except RequestValidationError as error:
        raise RequestValidationError(
            [
                {**problem, "loc": ("body", "cells", cell.id, *problem["loc"][1:])}
                for problem in error.errors()
            ]
        ) from None


def job_name(sweep_name: str, cell: Cell) -> str:
    """``tiny method=LEAP-CF seed0``-like: the sweep's name and what the cell is."""
    return f"{sweep_name} {cell.title()}"[:NAME_LENGTH]


def plan_cells(body: SweepCreate, settings: Settings) -> list[PlannedCell]:
    """Every cell validated and resolved, in the order ``leap sweep`` runs them (seed by
    seed), or a 422 at the first invalid one."""
    check_servable(body, settings)
    try:
        # The base is inline (checked above), so the folder for a relative base is unused.
        grid = expand(body, settings.resolved_data_roots()[0], body.overrides)
    except SweepError as error:
        # A SweepError is one line, "where: problem"; for a cell, where is its axis labels
        # and seed, and the problem names the spec field and the value.
        where, sep, message = str(error).partition(": ")
        problem = {
            "type": "invalid_sweep",
            "loc": ("body", where) if sep else ("body",),
            "msg": message if sep else str(error),
        }
        raise RequestValidationError([problem]) from None
    planned = []
    for cell in grid:
        _check_cell_paths(cell, settings)
        planned.append(
            PlannedCell(
                cell=cell.id,
                labels=cell.labels,
                seed=cell.seed,
                name=job_name(body.name, cell),
                spec=resolved_spec(cell.spec, settings),
            )
        )
    return planned
