"""A sweep run on this machine: the bars, the cells one after another, the table.

Imported by ``leap sweep`` only when it runs a grid here, so that the command line (and
``leap sweep --remote``) starts without torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from leap_core.home import leap_home
from leap_core.sweeps.grid import Cell, expand
from leap_core.sweeps.results import CellResult, finished_result
from leap_core.sweeps.runner import CellEvents, SweepOutcome, run_sweep
from leap_core.sweeps.sweepfile import SweepError, load_sweep
from leap_core.sweeps.table import Row, cells, headers
from leap_core.training.hooks import Hook, StepInfo
from leap_core.training.trainer import Trainer


class _StepHook(Hook):
    """Moves the per-cell bar after every optimizer step."""

    def __init__(self, progress: Progress, task: TaskID) -> None:
        self.progress, self.task = progress, task

    def on_start(self, trainer: Trainer) -> None:
        self.progress.update(self.task, total=trainer.total_steps, completed=trainer.global_step)

    def on_step(self, trainer: Trainer, info: StepInfo) -> None:
        self.progress.update(
            self.task,
            completed=info.global_step,
            description=f"  epoch {info.epoch + 1}/{trainer.spec.train.epochs}"
            f"  loss {info.figures.get('loss', float('nan')):.3f}",
        )


class _Bars(CellEvents):
    """Two bars: cells of the sweep, steps of the current cell."""

    def __init__(self, progress: Progress, total: int) -> None:
        self.progress = progress
        self.cells = progress.add_task("sweep", total=total)
        self.steps = progress.add_task("  cell", total=None, visible=False)

    def cell_started(self, index: int, total: int, cell: Cell) -> None:
        self.progress.update(self.cells, description=f"{cell.title()}")
        self.progress.reset(self.steps, total=None, visible=True, description="  preparing")

    def cell_finished(self, cell: Cell, result: CellResult | None, skipped: bool) -> None:
        self.progress.advance(self.cells)
        if skipped:
            return
        if result is None:
            self.progress.console.print(f"[red]{cell.title()}: failed[/]", highlight=False)
            return
        metrics = result.metrics
        self.progress.console.print(
            f"{cell.title()}: rank-1 {metrics.get('rank1', float('nan')):.1%}  "
            f"mAP {metrics.get('mAP', float('nan')):.1%}  ({result.wall_s:.0f} s)",
            highlight=False,
        )

    def hooks(self) -> list[Hook]:
        return [_StepHook(self.progress, self.steps)]


def select(grid: list[Cell], only: list[str]) -> list[Cell]:
    """The cells whose labels match every ``--only axis=label`` (labels of one axis are
    alternatives)."""
    wanted: dict[str, set[str]] = {}
    for item in only:
        axis, sep, label = item.partition("=")
        if not sep:
            raise SweepError(f"--only: expected axis=label, got {item!r}")
        wanted.setdefault(axis, set()).add(label)
    if not grid:
        return grid
    axes = dict(grid[0].labels)
    for axis, labels in wanted.items():
        if axis not in axes:
            raise SweepError(f"--only: no axis named {axis!r} (axes: {list(axes)})")
        known = {cell.label(axis) for cell in grid}
        if labels - known:
            raise SweepError(
                f"--only {axis}: no value {sorted(labels - known)[0]!r} (values: {sorted(known)})"
            )
    return [
        cell for cell in grid if all(cell.label(axis) in labels for axis, labels in wanted.items())
    ]


def _rich_table(rows: list[Row], title: str) -> Table:
    table = Table(title=title)
    for name in headers(rows):
        table.add_column(name, justify="left" if name in ("method", "vs") else "right")
    for row in rows:
        table.add_row(*cells(row))
    return table


def run_local(
    sweep_file: Path,
    overrides: dict[str, Any],
    output: Path | None,
    mlflow: bool,
    log_model: bool,
    dry_run: bool,
    table_only: bool,
    only: list[str],
    console: Console,
) -> SweepOutcome | None:
    """Run (or list, with ``dry_run``) the grid here; None when nothing was run."""
    spec, folder = load_sweep(sweep_file)
    grid = select(expand(spec, folder, overrides), only)
    out = output or Path(spec.output or leap_home() / "sweeps" / spec.name)
    if dry_run:
        for cell in grid:
            state = "done" if finished_result(out, cell) is not None else "to run"
            console.print(f"{cell.id}  [dim]{state}[/]", highlight=False)
        console.print(f"{len(grid)} cells; results in {out}", highlight=False)
        return None
    tracker = None
    if mlflow and not table_only:
        from leap_core.sweeps.tracking import SweepTracker

        tracker = SweepTracker(spec, out, log_model=log_model)
    split = "validation split" if spec.validation else "test split"
    console.print(
        f"[bold]sweep {spec.name}[/]: {len(grid)} cells ({split}); results in {out}",
        highlight=False,
    )
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        outcome = run_sweep(
            spec,
            grid,
            out,
            tracker,
            _Bars(progress, len(grid)),
            table_only=table_only,
            echo=console.print,
        )
    if outcome.rows:
        console.print(_rich_table(outcome.rows, f"{spec.name}: mean ± std over seeds (%)"))
    return outcome
