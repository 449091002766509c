"""Paired differences over seeds with Student-t intervals, against hand-derived values."""

from __future__ import annotations

import math

import pytest

from leap_core.sweeps.paired import paired_difference


def test_interval_uses_students_t_on_the_per_seed_differences():
    # Differences 1, 2, 3: mean 2, sample std 1, standard error 1/√3; t(0.975, 2) = 4.302653.
    d = paired_difference({0: 11.0, 1: 12.0, 2: 13.0, 3: 99.0}, {0: 10.0, 1: 10.0, 2: 10.0})
    assert d.n == 3 and d.mean == pytest.approx(2.0)
    half = 4.302653 / math.sqrt(3)
    assert (d.low, d.high) == (pytest.approx(2 - half, abs=1e-6), pytest.approx(2 + half, abs=1e-6))
    assert d.above_zero is False  # 2 − 2.484 < 0


def test_four_consistent_pairs_are_above_zero():
    # Differences 1.0, 1.2, 0.8, 1.0: mean 1, std √(0.08/3); t(0.975, 3) = 3.182446.
    d = paired_difference({0: 2.0, 1: 2.2, 2: 1.8, 3: 2.0}, {0: 1.0, 1: 1.0, 2: 1.0, 3: 1.0})
    half = 3.182446 * math.sqrt(0.08 / 3) / 2
    assert d.low == pytest.approx(1 - half, abs=1e-6) and d.above_zero


def test_missing_or_non_finite_pairs_are_left_out():
    d = paired_difference({0: 1.0, 1: math.nan}, {0: 0.5, 1: 0.2, 2: 0.1})
    assert d.n == 1 and d.mean == 0.5 and math.isnan(d.low) and not d.above_zero
    empty = paired_difference({}, {0: 1.0})
    assert empty.n == 0 and math.isnan(empty.mean)
