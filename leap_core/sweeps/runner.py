"""Running a sweep locally: cells one after another, finished ones skipped, then the table.

Resumable at two levels: a cell whose result file exists is skipped, and a cell that was
interrupted mid-run continues from its checkpoint (the trainer's exact resume, which also
continues the same MLflow child run). A cell whose loss diverges is recorded as failed and
the sweep goes on; failed cells run again on the next invocation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from leap_core.data.readers import read_listing
from leap_core.run_names import method_label
from leap_core.sweeps.grid import Cell
from leap_core.sweeps.plots import draw_sweep_plots
from leap_core.sweeps.results import CellResult, finished_result, result_path, write_result
from leap_core.sweeps.sweepfile import SweepFile
from leap_core.sweeps.table import Row, build_rows, to_csv, to_markdown
from leap_core.sweeps.validation import holdout_listing
from leap_core.training.checkpoint_store import latest_checkpoint, open_checkpoint
from leap_core.training.data_setup import prepare_data
from leap_core.training.hooks import Hook
from leap_core.training.trainer import NonFiniteLoss, Trainer

if TYPE_CHECKING:
    from leap_core.sweeps.tracking import SweepTracker


@dataclass
class SweepOutcome:
    """What an invocation did and where the table went."""

    results: list[CellResult]
    rows: list[Row]
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    wall_s: float = 0.0


class CellEvents:
    """Callbacks the runner reports through (the CLI draws progress bars with them)."""

    def cell_started(self, index: int, total: int, cell: Cell) -> None:
        """A cell (number ``index`` of ``total``) begins."""

    def cell_finished(self, cell: Cell, result: CellResult | None, skipped: bool) -> None:
        """A cell ended: its result, or None if it failed."""

    def hooks(self) -> list[Hook]:
        """Trainer hooks to attach to every cell (e.g. a step progress bar)."""
        return []


def _resume_point(run_dir: Path, cell: Cell) -> Path | None:
    """The checkpoint of an interrupted attempt at this very spec, if any."""
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        return None
    try:
        saved = open_checkpoint(checkpoint).common["spec"]
    except Exception:  # unreadable (e.g. cut short): start the cell over
        return None
    return checkpoint if saved == cell.spec.model_dump(mode="json") else None


def run_cell(cell: Cell, sweep: SweepFile, output: Path, hooks: list[Hook]) -> CellResult:
    """Train one cell (resuming an interrupted attempt) and write its result file."""
    started = time.perf_counter()
    listing = None
    if sweep.validation is not None:
        listing = holdout_listing(read_listing(cell.spec.dataset), sweep.validation)
    data = prepare_data(cell.spec, listing=listing)
    run_dir = output / "runs" / cell.id
    trainer = Trainer(cell.spec, run_dir, hooks, data=data)
    metrics = trainer.fit(_resume_point(run_dir, cell))
    diagnostics = trainer.diagnostics
    result = CellResult(
        cell=cell.id,
        labels=dict(cell.labels),
        seed=cell.seed,
        method=method_label(cell.spec),
        split="validation" if sweep.validation is not None else "test",
        spec=cell.spec.model_dump(mode="json"),
        metrics={k: float(v) for k, v in metrics.items()},
        wall_s=time.perf_counter() - started,
        class_counts=[int(c) for c in data.manifest.class_counts],
        class_variance=[float(v) for v in diagnostics.stats.variance] if diagnostics else [],
        head=[bool(h) for h in trainer.split.head],
        mlflow_run_id=trainer.mlflow_run_id,
    )
    write_result(result_path(output, cell), result)
    return result


def run_sweep(
    sweep: SweepFile,
    cells: list[Cell],
    output: Path,
    tracker: SweepTracker | None = None,
    events: CellEvents | None = None,
    table_only: bool = False,
    echo: Callable[[str], None] = lambda _line: None,
) -> SweepOutcome:
    """Run every unfinished cell in order, then write the table and plots into ``output``.

    ``table_only`` runs nothing: the table is built from the cells already finished.
    """
    events = events or CellEvents()
    started = time.perf_counter()
    outcome = SweepOutcome([], [])
    for index, cell in enumerate(cells):
        done = finished_result(output, cell)
        if done is not None:
            outcome.results.append(done)
            outcome.skipped.append(cell.id)
            events.cell_finished(cell, done, skipped=True)
            continue
        if table_only:
            continue
        hooks = events.hooks()
        if tracker is not None:
            hooks.append(tracker.child_hook(cell))
        events.cell_started(index, len(cells), cell)
        try:
            result = run_cell(cell, sweep, output, hooks)
        except NonFiniteLoss as error:
            outcome.failed[cell.id] = str(error)
            echo(f"{cell.id}: failed: {error}")
            events.cell_finished(cell, None, skipped=False)
            continue
        outcome.results.append(result)
        outcome.ran.append(cell.id)
        events.cell_finished(cell, result, skipped=False)
    outcome.rows = build_rows(
        outcome.results, sweep.method_axis, sweep.baselines, tuple(sweep.metrics)
    )
    if outcome.rows:
        markdown = output / "results.md"
        markdown.write_text(to_markdown(outcome.rows))
        table = output / "results.csv"
        table.write_text(to_csv(outcome.rows))
        outcome.files = [
            markdown,
            table,
            *draw_sweep_plots(outcome.results, sweep.method_axis, output / "plots"),
        ]
    if tracker is not None and not table_only:
        tracker.finish(outcome.files, failed=len(outcome.failed))
    outcome.wall_s = time.perf_counter() - started
    return outcome
