"""``leap train`` and ``leap eval``: run a job spec locally and re-evaluate a checkpoint."""

from __future__ import annotations

import io
import math
import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import Progress, TaskID
from rich.table import Table

from leap_cli.common import JsonOption, SetOption, fail, strict_json, usage_errors
from leap_core.home import leap_home
from leap_core.training.preemption import PREEMPTED_EXIT, preempt_on_sigterm

if TYPE_CHECKING:
    from leap_core.config import JobSpec
    from leap_core.training.data_setup import TrainingData
    from leap_core.training.world import Ranks


def _default_run_dir(spec: JobSpec) -> Path:
    from leap_core.run_names import run_name

    slug = re.sub(r"[^A-Za-z0-9]+", "-", spec.name or run_name(spec)).strip("-").lower()
    return leap_home() / "runs" / f"{slug}-{time.strftime('%Y%m%d-%H%M%S')}"


def _prepare(spec: JobSpec, console: Console, ranks: Ranks | None = None) -> TrainingData:
    """Prepare data, showing a bar while a synthetic dataset is generated and while the
    training images are decoded into memory."""
    from leap_core.training.data_setup import prepare_data

    with Progress(console=console, transient=True) as progress:
        tasks: dict[str, TaskID] = {}

        def reporter(label: str) -> Callable[[int, int], None]:
            def report(done: int, total: int) -> None:
                if label not in tasks:
                    tasks[label] = progress.add_task(label, total=total)
                progress.update(tasks[label], completed=done, total=total)

            return report

        return prepare_data(
            spec,
            progress=reporter("generating synthetic dataset"),
            decode_progress=reporter("decoding training images"),
            rank=ranks.rank if ranks else 0,
            world_size=ranks.world_size if ranks else 1,
        )


def _metrics_table(metrics: dict[str, float]) -> Table:
    table = Table(title="final metrics")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        shown = (
            "nan"
            if not math.isfinite(value)
            else (
                f"{value:.1%}"
                if name in ("mAP", "mINP") or name.startswith("rank")
                else f"{value:.4g}"
            )
        )
        table.add_row(name, shown)
    return table


def train(
    spec_file: Annotated[Path, typer.Argument(help="job spec (YAML or JSON)")],
    overrides: SetOption = None,
    resume: Annotated[Path | None, typer.Option(help="checkpoint to continue from")] = None,
    run_dir: Annotated[Path | None, typer.Option(help="where checkpoints go")] = None,
    mlflow: Annotated[bool, typer.Option(help="log the run to MLflow")] = True,
    as_json: JsonOption = False,
    nproc: Annotated[
        int | None,
        typer.Option(
            "--nproc",
            min=1,
            help="processes on this machine, one per GPU (or CPU processes with gloo), "
            "started by torchrun; the classes are sharded across them "
            "[default: the spec's resources.devices]",
        ),
    ] = None,
) -> None:
    """Train a model as the spec says, logging to MLflow; prints the final metrics."""
    if "WORLD_SIZE" not in os.environ and nproc != 1:
        launch_ranks(nproc, spec_file, overrides, resume, run_dir, mlflow, as_json)
        return
    from leap_cli.progress import ProgressHook
    from leap_cli.stack import track_to_running_stack
    from leap_core.config import JobSpec, SpecError
    from leap_core.run_names import run_name
    from leap_core.spec_paths import load_spec
    from leap_core.training.checkpoint_store import open_checkpoint, run_dir_of
    from leap_core.training.hooks import Hook
    from leap_core.training.trainer import (
        NonFiniteLoss,
        Trainer,
        TrainingPreempted,
        resolve_device,
    )
    from leap_core.training.world import init_from_environment, leave_process_group

    console = Console(stderr=as_json)
    tracking_uri = None
    experiment_id: str | None = None
    # From the start: a SIGTERM while the data are read stops the run after its first step.
    with preempt_on_sigterm() as notice:
        try:
            spec = load_spec(spec_file, overrides or [])
            ranks = init_from_environment(resolve_device(spec.train.device).type)
            main = ranks is None or ranks.main
            if not main:  # only rank 0 reports: one progress display, one MLflow run
                console = Console(file=io.StringIO())
                mlflow = False
            if mlflow:
                track_to_running_stack()
            if resume is not None:
                saved = JobSpec.model_validate(open_checkpoint(resume).common["spec"])
                if saved.model_dump() != spec.model_dump():
                    raise SpecError(
                        f"--resume {resume}: the checkpoint was trained with a "
                        f"different spec; resume with the same spec and --set values"
                    )
                run_dir = run_dir or run_dir_of(resume)
            data = _prepare(spec, console, ranks)
            hooks: list[Hook] = [ProgressHook(console)] if main else []
            if mlflow:
                # Imported here: mlflow takes seconds to import and --no-mlflow runs skip it.
                from leap_core.tracking.mlflow_hook import MLflowHook

                tracker = MLflowHook()
                tracking_uri = tracker.tracking_uri
                hooks.append(tracker)
            trainer = Trainer(spec, run_dir or _default_run_dir(spec), hooks, data=data)
            spread = f" x {ranks.world_size} processes" if ranks else ""
            console.print(
                f"[bold]{run_name(spec)}[/]: {data.manifest.num_classes} classes, "
                f"{len(data.manifest.records)} training images, "
                f"{data.steps_per_epoch} steps/epoch on {trainer.device}{spread}; "
                f"checkpoints in {trainer.run_dir}",
                highlight=False,
            )
            notice.attach(trainer)
            metrics = trainer.fit(resume)
            if mlflow:
                experiment_id = tracker.experiment_id
        except TrainingPreempted as error:
            leave_process_group()  # every rank stopped at the same step; rank 0 has written
            fail(f"{error}; continue with --resume {error.checkpoint}", code=PREEMPTED_EXIT)
        except NonFiniteLoss as error:
            fail(str(error), code=1)
        except KeyboardInterrupt:
            fail("interrupted; continue with --resume <run dir>", code=130)
        except usage_errors() as error:
            fail(str(error))
    leave_process_group()
    if not main:
        return
    if as_json:
        typer.echo(strict_json(metrics, sort_keys=True))
    else:
        console.print(_metrics_table(metrics))
        if trainer.mlflow_run_id and tracking_uri:
            hint = browse_hint(tracking_uri, trainer.mlflow_run_id, experiment_id)
            console.print(
                f"MLflow run {trainer.mlflow_run_id} ({hint})",
                highlight=False,
                soft_wrap=True,
            )


def launch_ranks(
    nproc: int | None,
    spec_file: Path,
    overrides: list[str] | None,
    resume: Path | None,
    run_dir: Path | None,
    mlflow: bool,
    as_json: bool,
) -> None:
    """Run this command again as ``nproc`` ranks (:mod:`leap_core.distributed.launch`).
    The run folder is chosen here, once, so every rank agrees on it."""
    from leap_core.distributed.launch import RankFailed, run_ranks
    from leap_core.spec_paths import load_spec
    from leap_core.training.checkpoint_store import run_dir_of

    try:
        spec = load_spec(spec_file, overrides or [])
    except usage_errors() as error:
        fail(str(error))
    nproc = nproc or spec.resources.devices
    if nproc == 1:
        train(spec_file, overrides, resume, run_dir, mlflow, as_json, nproc=1)
        return
    folder = run_dir or (run_dir_of(resume) if resume else _default_run_dir(spec))
    arguments = ["train", str(spec_file), "--run-dir", str(folder)]
    arguments.append("--mlflow" if mlflow else "--no-mlflow")
    for override in overrides or []:
        arguments += ["--set", override]
    if resume is not None:
        arguments += ["--resume", str(resume)]
    if as_json:
        arguments.append("--json")
    try:
        run_ranks(nproc, "leap_cli", arguments)
    except RankFailed as error:
        if error.exitcode in (PREEMPTED_EXIT, -signal.SIGTERM):
            # A rank's SIGTERM checkpoints every rank; one to the launcher reaches every rank.
            fail(
                f"training across {nproc} processes was preempted ({error}): ranks that "
                f"were training checkpointed at the step boundary; continue with --resume "
                f"{folder}",
                code=PREEMPTED_EXIT,
            )
        fail(
            f"training across {nproc} processes failed: {error}; continue with --resume {folder}",
            code=1,
        )


def browse_hint(tracking_uri: str, run_id: str, experiment_id: str | None) -> str:
    """Where to look at the run: its page on the server's UI, or the command that serves a
    local store and the page there (in the UI's model-training view)."""
    from leap_core.tracking.links import run_link

    if tracking_uri.startswith(("http://", "https://")):
        return f"browse: {run_link(tracking_uri, run_id, experiment_id)}"
    return (
        f"browse: mlflow ui --backend-store-uri {tracking_uri}, then "
        f"{run_link('http://127.0.0.1:5000', run_id, experiment_id)}"
    )


def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint written by leap train")],
    overrides: SetOption = None,
    as_json: JsonOption = False,
) -> None:
    """Re-evaluate a saved model on its dataset's query and gallery splits."""
    from leap_cli.progress import ProgressHook
    from leap_core.config import parse_spec
    from leap_core.spec_paths import apply_overrides
    from leap_core.training.checkpoint_store import open_checkpoint, run_dir_of
    from leap_core.training.trainer import Trainer

    console = Console(stderr=as_json)
    progress = ProgressHook(console)
    try:
        payload = open_checkpoint(checkpoint).common  # the backbone: no class's rows are read
        spec = parse_spec(apply_overrides(payload["spec"], overrides or []))
        data = _prepare(spec, console)
        trainer = Trainer(spec, run_dir_of(checkpoint), data=data, hooks=[progress])
        trainer.model.load_state_dict(payload["model"])
        metrics = trainer.evaluate()
    except usage_errors() as error:
        fail(str(error))
    finally:
        progress.stop()
    if as_json:
        typer.echo(strict_json(metrics, sort_keys=True))
    else:
        console.print(_metrics_table(metrics))
