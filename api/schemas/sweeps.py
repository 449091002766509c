"""Sweep request and reply bodies: ``SweepCreate`` in; ``SweepDetail`` (cells, counts and
the results table) and ``SweepPage`` out."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from leap_core.sweeps.sweepfile import SweepFile


class SweepCreate(SweepFile):
    """The sweep file of ``leap sweep`` (with ``base`` given inline as a spec mapping) plus
    how the service files its jobs. ``output`` and ``experiment`` are settings of a local
    run and are ignored here: results stay in the jobs and ``GET /v1/sweeps/{id}``, runs go
    to the service's MLflow experiment."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "cosface-vs-leap",
                    "base": {
                        "model": {"backbone": "tiny_cnn", "embedding_dim": 32},
                        "train": {"epochs": 3},
                        "method": {"leap": {"cloud_start_epoch": 1}},
                    },
                    "axes": {
                        "method": {
                            "CosFace": {"method.leap.mode": "off"},
                            "LEAP-CF": {"method.leap.mode": "full"},
                        }
                    },
                    "seeds": [0, 1],
                }
            ]
        }
    )

    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="dotted field: value set in every cell last, over "
        "the axes (what `leap sweep --set` does)",
    )
    tags: list[str] = Field(
        default_factory=list,
        max_length=20,
        description="given to every job of the sweep, with sweep:<id>",
    )
    priority: int = Field(5, ge=0, le=9, description="0-9 for every job, higher runs first")


class CellPublic(BaseModel):
    cell: str = Field(description="the cell's id, e.g. method=LEAP-CF__seed0")
    labels: dict[str, str] = Field(description="axis -> value label")
    seed: int
    job_id: str
    status: str
    metrics: dict[str, float] = Field(description="the job's latest (final once succeeded)")


class SpreadPublic(BaseModel):
    """Over seeds, as fractions (not percent); ``std`` is null for fewer than two seeds."""

    mean: float | None
    std: float | None
    n: int


class RowPublic(BaseModel):
    setting: dict[str, str] = Field(description="every axis but the method axis -> label")
    method: str
    paper_method: str = Field(description="the spec's method: CosFace, LEAP-CF, ...")
    seeds: list[int]
    metrics: dict[str, SpreadPublic] = Field(
        description="the sweep's metric columns and the final head/tail angular variances (rad²)"
    )
    baseline: str | None = Field(description="the row the deltas are taken against")
    delta: dict[str, SpreadPublic] = Field(description="paired by seed: method − baseline")


class TablePublic(BaseModel):
    complete: bool = Field(description="every cell succeeded and is in the table")
    note: str = Field(description="what the table covers (partial while jobs run)")
    cells_in_table: int
    cells: int
    rows: list[RowPublic]
    markdown: str = Field(
        description="the paper-format table (percent, mean ± std); empty until a cell has succeeded"
    )


class SweepLinks(BaseModel):
    self: str
    jobs: str


class SweepSummary(BaseModel):
    id: str
    name: str
    status: str = Field(
        description="queued, running, succeeded, failed or cancelled, from the jobs' states"
    )
    created_at: datetime
    tags: list[str]
    priority: int
    counts: dict[str, int] = Field(description="jobs in each state")
    links: SweepLinks


class SweepDetail(SweepSummary):
    cells: list[CellPublic]
    table: TablePublic


class SweepPage(BaseModel):
    items: list[SweepSummary]
    next_cursor: str | None
