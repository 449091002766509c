"""Learning-rate schedules as pure functions of training progress.

Each returns the learning rate at a fractional epoch ``t`` (``epoch + step / steps_per_epoch``),
so the rate is recomputed from the step counter alone: a resumed run needs no scheduler
state beyond the counter kept in its checkpoint, and the schedule is trivially testable.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence


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
