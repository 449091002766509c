"""Hooks: how the CLI, the worker and MLflow follow a run without touching the loop.

The trainer calls every hook at the same points; a hook overrides only what it needs.
``should_stop`` is the cancellation check between steps: the service answers it from the
job's state, the CLI from Ctrl-C.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from leap_core.training.trainer import Trainer


def finite_metrics(values: dict[str, float]) -> dict[str, float]:
    """The metrics worth recording: NaN and ±inf (a metric undefined for this run, e.g. a
    face protocol's figure without pairs) are dropped, since neither MLflow nor JSON
    stores them."""
    return {name: float(value) for name, value in values.items() if math.isfinite(float(value))}


@dataclass
class StepInfo:
    """Where the run is and what the last step measured."""

    epoch: int
    step: int  # step within the epoch, 1-based after the step
    global_step: int  # steps done since the run began
    steps_per_epoch: int
    total_steps: int
    lr: float
    images_per_second: float
    figures: dict[str, float] = field(default_factory=dict)


class Hook:
    """No-op base: subclasses override what they follow."""

    def on_start(self, trainer: Trainer) -> None:
        """After setup (and after restoring a checkpoint, when resuming)."""

    def on_step(self, trainer: Trainer, info: StepInfo) -> None:
        """After every optimizer step."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        """After each epoch; ``metrics`` holds the epoch's means and any evaluation."""

    def on_checkpoint(self, trainer: Trainer, path: Path) -> None:
        """After a checkpoint was written."""

    def on_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        """After the last epoch, with the final metrics."""

    def on_work(self, trainer: Trainer, what: str, done: int, total: int) -> None:
        """Progress of a long piece of work between steps (decoding the evaluation images
        the first time, re-ranking): ``done`` of ``total`` units, ``what`` names it."""

    def on_failure(self, trainer: Trainer, error: BaseException) -> None:
        """When the run stops with an error or is cancelled."""

    def should_stop(self, trainer: Trainer) -> bool:
        """Polled between steps; True cancels the run (the last checkpoint is kept)."""
        return False
