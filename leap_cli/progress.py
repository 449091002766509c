"""A rich progress display for training: epoch, step, loss, lr, images/s and ETA, and a bar
for each long piece of work between steps (decoding evaluation images, re-ranking)."""

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
    """One bar over all steps of the run (the figures column carries the live figures),
    and one more while a piece of work between steps lasts. Used without a training loop
    (``leap eval``), it shows the work bars alone; :meth:`stop` ends the display."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}[/]"),
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
        self.work: dict[str, TaskID] = {}

    def on_start(self, trainer: Trainer) -> None:
        self.progress.start()
        self.task = self.progress.add_task(
            f"epoch {trainer.epoch + 1}/{trainer.spec.train.epochs}",
            total=trainer.total_steps,
            completed=trainer.global_step,
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
            description=f"epoch {info.epoch + 1}/{trainer.spec.train.epochs}",
            figures=figures,
        )

    def on_work(self, trainer: Trainer, what: str, done: int, total: int) -> None:
        if not self.progress.live.is_started:
            self.progress.start()
        task = self.work.get(what)
        if task is None:
            task = self.work[what] = self.progress.add_task(what, total=total, figures="")
        self.progress.update(task, completed=done, total=total)
        if done >= total:
            self.progress.remove_task(self.work.pop(what))

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

    def stop(self) -> None:
        """End the display (after work followed without a training loop)."""
        self.progress.stop()
