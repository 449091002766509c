"""Learning-rate schedules as pure functions of training progress.

Each returns the learning rate at a fractional epoch ``t`` (``epoch + step / steps_per_epoch``),
so the rate is recomputed from the step counter alone: a resumed run needs no scheduler
state beyond the counter kept in its checkpoint, and the schedule is trivially testable.
:data:`SCHEDULES` is the one table from a spec's ``train.schedule.kind`` to its rate.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from leap_core.config import TrainSpec


def warmup_multistep(
    t: float,
    base_lr: float,
    warmup_epochs: float = 10.0,
    milestones: Sequence[float] = (40, 70),
    gamma: float = 0.1,
    warmup_factor: float = 0.01,
) -> float:
    """Linear warm-up from ``warmup_factor·base_lr`` to ``base_lr`` over ``warmup_epochs``,
    then multiplied by ``gamma`` at each milestone passed (the re-ID "bag of tricks")."""
    decay = gamma ** bisect.bisect_right(sorted(milestones), t)
    if warmup_epochs > 0 and t < warmup_epochs:
        fraction = t / warmup_epochs
        return base_lr * decay * (warmup_factor + (1.0 - warmup_factor) * fraction)
    return base_lr * decay


def cosine(
    t: float, base_lr: float, total_epochs: float, warmup_epochs: float = 0.0, min_lr: float = 0.0
) -> float:
    """Linear warm-up from 0, then half a cosine from ``base_lr`` down to ``min_lr`` at
    ``total_epochs``."""
    if warmup_epochs > 0 and t < warmup_epochs:
        return base_lr * t / warmup_epochs
    span = max(total_epochs - warmup_epochs, 1e-12)
    progress = min(max((t - warmup_epochs) / span, 0.0), 1.0)
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def triangular(t: float, base_lr: float, max_lr: float, cycle_epochs: float) -> float:
    """Triangular cyclic policy (Smith 2017) used by the paper for faces: each cycle of
    ``cycle_epochs`` rises linearly from ``base_lr`` to ``max_lr`` and falls back."""
    position = (t / cycle_epochs) % 1.0
    height = 1.0 - abs(2.0 * position - 1.0)
    return base_lr + (max_lr - base_lr) * height


def constant(t: float, base_lr: float) -> float:
    """The same rate throughout."""
    return base_lr


#: ``train.schedule.kind`` → the rate at fractional epoch ``t`` for a run's training spec.
SCHEDULES: dict[str, Callable[[float, TrainSpec], float]] = {
    "warmup_multistep": lambda t, train: warmup_multistep(
        t,
        train.optimizer.lr,
        train.schedule.warmup_epochs,
        train.schedule.milestones,
        train.schedule.gamma,
        train.schedule.warmup_factor,
    ),
    "cosine": lambda t, train: cosine(
        t, train.optimizer.lr, train.epochs, train.schedule.warmup_epochs, train.schedule.min_lr
    ),
    "triangular": lambda t, train: triangular(
        t,
        train.optimizer.lr,
        train.schedule.max_lr if train.schedule.max_lr is not None else 10 * train.optimizer.lr,
        train.schedule.cycle_epochs,
    ),
    "constant": lambda t, train: constant(t, train.optimizer.lr),
}


def learning_rate(train: TrainSpec, t: float) -> float:
    """The learning rate at fractional epoch ``t`` under the training spec's schedule."""
    return SCHEDULES[train.schedule.kind](t, train)
