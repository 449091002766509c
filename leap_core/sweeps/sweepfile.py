"""The sweep file: a base job spec, named axes of overrides, seeds, and where results go.

A sweep is the paper's way of showing a method: the same training run repeated over
long-tail settings × methods × seeds. The file names each axis value (``"<H20,S5>"``,
``LEAP-CF``) so the results table speaks the paper's language, and each value is a mapping
of dotted spec fields to values (the YAML already typed them, unlike ``--set`` strings)::

    name: market-table4
    base: ../market1501_h20s5_cosface.yaml     # a spec file (relative to this file) or a mapping
    set: {train.epochs: 60}                     # applied to every cell
    axes:
      setting:
        "<H20,S5>": {dataset.long_tail.head: 20, dataset.long_tail.tail_samples: 5}
      method:
        CosFace: {method.head.kind: cosface, method.leap.mode: "off"}
        LEAP-CF: {method.head.kind: cosface, method.leap.mode: full}
    seeds: [0, 1, 2]

Unknown fields are errors; every error names the field and the value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from leap_core.config import MAX_INT32, format_validation_error
from leap_core.yaml_files import read_yaml

#: A LEAP method's baseline (paper Tables 4-5): the margin loss it is built on.
PAPER_BASELINES: dict[str, str] = {
    "LEAP-CV": "CosFace",
    "LEAP-CF": "CosFace",
    "LEAP-AV": "ArcFace",
    "LEAP-AF": "ArcFace",
    "LEAP-NV": "NormFace",
    "LEAP-NF": "NormFace",
    "CosFace+noise": "CosFace",
    "ArcFace+noise": "ArcFace",
    "NormFace+noise": "NormFace",
}


class SweepError(ValueError):
    """A sweep file that cannot be run; the message is one line naming the field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ValidationSplit(_Model):
    """Tune on training identities instead of the test set: ``identities`` training
    identities (chosen at random with ``seed``, the same for every cell) leave the training
    set and become the query/gallery split."""

    identities: int = Field(..., ge=2, description="training identities held out")
    seed: int = Field(
        0, ge=0, le=MAX_INT32, description="which identities (fixed across the sweep's seeds)"
    )
    queries_per_identity: int = Field(
        1,
        ge=1,
        description="images of each held-out identity used as queries; the rest form the gallery",
    )


class SweepFile(_Model):
    name: str = Field(
        ...,
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9_.\-]+$",
        description="the sweep's name: MLflow parent run, default output folder",
    )
    base: str | dict[str, Any] = Field(
        ..., description="job spec file (relative to the sweep file) or an inline spec mapping"
    )
    set: dict[str, Any] = Field(
        default_factory=dict,
        description="dotted field: value, applied to every cell before the axes",
    )
    axes: dict[str, dict[str, dict[str, Any]]] = Field(
        ...,
        description="axis name -> value label -> {dotted field: value}; the grid is "
        "their product, in file order",
    )
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    seed_fields: list[str] = Field(
        default_factory=lambda: ["train.seed", "dataset.long_tail.seed"],
        description="spec fields set to the cell's seed",
    )
    method_axis: str = Field(
        "method",
        description="the axis whose values are compared with their baseline in the results table",
    )
    baselines: dict[str, str] = Field(
        default_factory=lambda: dict(PAPER_BASELINES),
        description="method (paper label) -> its baseline",
    )
    metrics: list[str] = Field(
        default_factory=lambda: ["mAP", "rank1"],
        min_length=1,
        description="table columns (final metrics, shown in percent); face sweeps: [lfw_accuracy]",
    )
    validation: ValidationSplit | None = None
    output: str | None = Field(
        None,
        description="results folder (default "
        "$LEAP_HOME/sweeps/<name>; relative paths from the working "
        "directory)",
    )
    experiment: str = Field("leap-sweeps", min_length=1, description="MLflow experiment")

    @field_validator("axes")
    @classmethod
    def _axes(cls, axes: dict[str, dict[str, dict[str, Any]]]) -> dict:
        if not axes:
            raise ValueError("needs at least one axis")
        for axis, values in axes.items():
            if not values:
                raise ValueError(f"axis {axis!r} has no values")
            for label, overrides in values.items():
                if not isinstance(overrides, dict):
                    raise ValueError(f"{axis}.{label} must map fields to values")
        return axes

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds) or min(seeds) < 0 or max(seeds) > MAX_INT32:
            raise ValueError(f"must be distinct integers from 0 to {MAX_INT32}")
        return seeds


def parse_sweep(data: Any) -> SweepFile:
    """Validate a mapping into a :class:`SweepFile`; errors are one line naming the field."""
    if not isinstance(data, dict):
        raise SweepError(f"sweep: must be a mapping, got {type(data).__name__}")
    try:
        return SweepFile.model_validate(data)
    except ValidationError as error:
        raise SweepError(format_validation_error(error).replace("\n", "; ")) from None


def load_sweep(path: str | Path) -> tuple[SweepFile, Path]:
    """Read a sweep file; returns it and the folder its relative ``base`` is resolved from."""
    path = Path(path)
    data = read_yaml(path, f"sweep file {path}", SweepError)
    return parse_sweep(data), path.resolve().parent
