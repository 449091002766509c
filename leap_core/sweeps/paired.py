"""Paired comparisons across seeds: the mean difference and its Student-t interval.

A method and its reference trained with the same seed share the training set (the cut's head
classes and tail images) and the initialisation, so their per-seed differences remove most of
the seed-to-seed variation. With few seeds the interval must use Student's t, not the normal
quantile: at 4 seeds the 95 % half-width is 3.18 standard errors, not 1.96.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class PairedDifference:
    """Mean of per-seed differences with its two-sided ``confidence`` t-interval."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float

    @property
    def above_zero(self) -> bool:
        """The whole interval is above 0 (needs at least two pairs)."""
        return self.n >= 2 and self.low > 0


def paired_difference(
    values: dict[int, float], reference: dict[int, float], confidence: float = 0.95
) -> PairedDifference:
    """``values − reference`` over the seeds both have (finite values only)."""
    seeds = sorted(
        seed
        for seed in values.keys() & reference.keys()
        if math.isfinite(values[seed]) and math.isfinite(reference[seed])
    )
    differences = np.asarray([values[s] - reference[s] for s in seeds], dtype=float)
    if differences.size == 0:
        return PairedDifference(math.nan, math.nan, math.nan, 0, confidence)
    mean = float(differences.mean())
    if differences.size == 1:
        return PairedDifference(mean, math.nan, math.nan, 1, confidence)
    error = float(differences.std(ddof=1)) / math.sqrt(differences.size)
    half = float(stats.t.ppf(0.5 + confidence / 2, differences.size - 1)) * error
    return PairedDifference(mean, mean - half, mean + half, int(differences.size), confidence)


def interval_text(difference: PairedDifference, scale: float = 100) -> str:
    """``+1.23 [+0.45, +2.01]`` (times ``scale``: percentage points for fractions), or the
    mean and the number of pairs when there are too few for an interval."""
    if difference.n < 2:
        return f"{difference.mean * scale:+.2f} (n={difference.n})"
    return (
        f"{difference.mean * scale:+.2f} [{difference.low * scale:+.2f}, "
        f"{difference.high * scale:+.2f}]"
    )
