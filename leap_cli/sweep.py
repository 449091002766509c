"""``leap sweep SWEEP.yaml``: a grid of training runs, run locally (ending with the table)
or submitted to the service with ``--remote``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console

from leap_cli.common import fail, usage_errors


class SetError(ValueError):
    """A malformed ``--set``."""


def _parse_sets(values: list[str]) -> dict[str, Any]:
    parsed = {}
    for value in values:
        path, sep, raw = value.partition("=")
        if not sep or not path.strip():
            raise SetError(f"--set: expected path.to.field=value, got {value!r}")
        parsed[path.strip()] = yaml.safe_load(raw)
    return parsed


def sweep(
    sweep_file: Annotated[Path, typer.Argument(help="sweep file (YAML)")],
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="override a field in every cell: path.to.field=value (repeatable)"
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            help="results folder (default: the file's output, else $LEAP_HOME/sweeps/<name>)"
        ),
    ] = None,
    mlflow: Annotated[bool, typer.Option(help="log a parent run and one child per cell")] = True,
    log_model: Annotated[bool, typer.Option(help="also log each cell's model to MLflow")] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="list the cells and whether they are done; run nothing"),
    ] = False,
    table_only: Annotated[
        bool,
        typer.Option("--table-only", help="write the table from the finished cells; run nothing"),
    ] = False,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only",
            help="run only cells with this axis label: axis=label (repeatable; several "
            "labels of one axis are alternatives), e.g. to split a grid over two "
            "processes",
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="torch CPU threads (1 is fastest on a small CPU machine shared with other "
            "work; default: torch's choice)",
        ),
    ] = None,
    remote: Annotated[
        bool,
        typer.Option(
            "--remote",
            help="submit the grid to the training service (one job per cell) "
            "instead of running it here; LEAP_URL and LEAP_API_KEY as for "
            "leap submit",
        ),
    ] = False,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch", help="with --remote: follow the cells and print the table at the end"
        ),
    ] = False,
) -> None:
    """Run a grid of settings × methods × seeds; finished cells are skipped on a rerun."""
    console = Console()
    if remote:
        from leap_cli.client import submit_sweep

        if only or dry_run or table_only:
            fail("--only, --dry-run and --table-only apply to local sweeps, not --remote")
        try:
            parsed = _parse_sets(overrides or [])
        except SetError as error:
            fail(str(error))
        submit_sweep(sweep_file, parsed, follow=watch)
        return
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    from leap_cli.stack import track_to_running_stack
    from leap_cli.sweep_local import run_local

    if mlflow:
        track_to_running_stack()
    from leap_core.sweeps.sweepfile import SweepError

    refused: tuple[type[BaseException], ...] = (SweepError, SetError, *usage_errors())
    try:
        outcome = run_local(
            sweep_file,
            _parse_sets(overrides or []),
            output,
            mlflow,
            log_model,
            dry_run,
            table_only,
            only or [],
            console,
        )
    except KeyboardInterrupt:
        fail("interrupted; run the same command again to continue", code=130)
    except refused as error:
        fail(str(error))
    if outcome is None:
        return
    console.print(
        f"ran {len(outcome.ran)}, skipped {len(outcome.skipped)} finished, "
        f"failed {len(outcome.failed)} in {outcome.wall_s:.0f} s; "
        + ", ".join(str(path) for path in outcome.files[:2]),
        highlight=False,
    )
    if outcome.failed:
        raise typer.Exit(1)
