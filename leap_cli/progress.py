"""A rich progress display for training: epoch, step, loss, lr, images/s and ETA."""

from __future__ import annotations

from typing import TYPE_CHECKING

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

from leap_core.training.hooks import Hook, StepInfo

if TYPE_CHECKING:
    from leap_core.training.trainer import Trainer


class ProgressHook(Hook):
    """One bar over all steps of the run; the description carries the live figures."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[figures]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task: TaskID | None = None

    def on_start(self, trainer: Trainer) -> None:
        self.progress.start()
        self.task = self.progress.add_task(
            "train",
            total=trainer.total_steps,
            completed=trainer.global_step,
            epoch=f"{trainer.epoch + 1}/{trainer.spec.train.epochs}",
            figures="",
        )

    def on_step(self, trainer: Trainer, info: StepInfo) -> None:
        figures = (
            f"loss {info.figures.get('loss', float('nan')):.3f}  lr {info.lr:.2e}  "
            f"{info.images_per_second:.0f} img/s"
        )
        assert self.task is not None  # added by on_start
        self.progress.update(
            self.task,
            completed=info.global_step,
            epoch=f"{info.epoch + 1}/{trainer.spec.train.epochs}",
            figures=figures,
        )

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        if "rank1" in metrics:
            self.progress.console.print(
                f"epoch {epoch + 1}: rank-1 {metrics['rank1']:.1%}  mAP {metrics['mAP']:.1%}"
            )

    def on_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        assert self.task is not None  # added by on_start
        self.progress.update(self.task, completed=trainer.global_step)
        self.progress.refresh()
        self.progress.stop()

    def on_failure(self, trainer: Trainer, error: BaseException) -> None:
        self.progress.stop()
