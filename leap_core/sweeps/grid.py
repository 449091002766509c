"""Expanding a sweep file into cells: one validated job spec per axis-value combination and
seed.

Every cell is validated before anything runs, so a typo in the last cell of a 40-run grid
fails in a second rather than after an hour. A cell's id is built from its labels and seed
and names its results file, which is what makes a sweep resumable.
"""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leap_core.config import JobSpec, SpecError, parse_spec
from leap_core.spec_paths import set_dotted
from leap_core.sweeps.sweepfile import SweepError, SweepFile
from leap_core.yaml_files import read_yaml


@dataclass(frozen=True)
class Cell:
    """One run of the sweep: its axis labels (in axis order), seed and full spec."""

    labels: tuple[tuple[str, str], ...]
    seed: int
    spec: JobSpec

    @property
    def id(self) -> str:
        """File-safe, unique within the sweep: ``setting=H100-S3__method=LEAP-CF__seed0``."""
        parts = [f"{_slug(axis)}={_slug(label)}" for axis, label in self.labels]
        return "__".join([*parts, f"seed{self.seed}"])

    def label(self, axis: str) -> str:
        return dict(self.labels)[axis]

    def title(self) -> str:
        """What the cell is, for progress lines and MLflow run names."""
        return " ".join([*(label for _axis, label in self.labels), f"seed{self.seed}"])


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+\-]+", "-", text).strip("-") or "x"


def set_field(data: dict[str, Any], dotted: str, value: Any, where: str) -> None:
    """Set ``a.b.c`` in a nested mapping, creating sections; ``where`` prefixes errors."""
    try:
        set_dotted(data, dotted, copy.deepcopy(value), where)
    except SpecError as error:
        raise SweepError(str(error)) from None


def base_mapping(sweep: SweepFile, folder: Path) -> dict[str, Any]:
    """The base spec as a mapping: the inline one, or the file named relative to ``folder``."""
    if isinstance(sweep.base, dict):
        return copy.deepcopy(sweep.base)
    path = Path(sweep.base)
    path = path if path.is_absolute() else folder / path
    data = read_yaml(path, f"base: {sweep.base}", SweepError)
    if not isinstance(data, dict):
        raise SweepError(f"base: {sweep.base} must hold a spec mapping, got {type(data).__name__}")
    return data


def expand(sweep: SweepFile, folder: Path, overrides: dict[str, Any] | None = None) -> list[Cell]:
    """All cells, validated: seed by seed, and within a seed the grid with the first axis
    slowest. Seed-major order means an interrupted sweep has whole tables for its first
    seeds rather than a few methods with every seed.

    ``overrides`` (dotted field: value, e.g. from ``leap sweep --set``) apply last, over
    the axes, so a quick check can shorten every run.
    """
    if "method_axis" in sweep.model_fields_set and sweep.method_axis not in sweep.axes:
        # Without a method axis the table simply has no deltas, but a misspelt one would
        # drop them silently.
        raise SweepError(
            f"method_axis: no axis named {sweep.method_axis!r} (axes: {list(sweep.axes)})"
        )
    base = base_mapping(sweep, folder)
    for dotted, value in sweep.set.items():
        set_field(base, dotted, value, "set")
    names = list(sweep.axes)
    combos = []
    for combo in itertools.product(*(sweep.axes[name].items() for name in names)):
        labels = tuple((name, label) for name, (label, _) in zip(names, combo, strict=True))
        data = copy.deepcopy(base)
        for name, (label, fields) in zip(names, combo, strict=True):
            for dotted, value in fields.items():
                set_field(data, dotted, value, f"axes.{name}.{label}")
        combos.append((labels, data))
    cells = []
    for seed in sweep.seeds:
        for labels, data in combos:
            seeded = copy.deepcopy(data)
            for dotted in sweep.seed_fields:
                set_field(seeded, dotted, seed, "seed_fields")
            for dotted, value in (overrides or {}).items():
                set_field(seeded, dotted, value, "--set")
            try:
                spec = parse_spec(seeded)
            except SpecError as error:
                where = "axes." + ", ".join(f"{name}.{label}" for name, label in labels)
                raise SweepError(
                    f"{where} seed {seed}: {str(error).replace(chr(10), '; ')}"
                ) from None
            cells.append(Cell(labels, seed, spec))
    ids = [cell.id for cell in cells]
    if len(set(ids)) != len(ids):
        raise SweepError(
            "axes: two value labels reduce to the same file name; make them "
            "differ in letters or digits"
        )
    return cells
