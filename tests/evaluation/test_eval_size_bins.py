"""Figures by class size: bins from their upper edges, means per bin."""

from __future__ import annotations

import math

import numpy as np

from leap_core.evaluation.size_bins import bin_name, mean_by_size, size_bins


def test_bins_run_from_one_to_an_open_last_bin():
    assert size_bins([1, 3, 6, 10]) == [(1, 1), (2, 3), (4, 6), (7, 10), (11, None)]
    assert [bin_name(*b) for b in size_bins([1, 3, 6, 10])] == [
        "K1",
        "K2-3",
        "K4-6",
        "K7-10",
        "K11+",
    ]
    assert size_bins([]) == [(1, None)]


def test_means_by_bin_leave_out_empty_bins_and_nan_values():
    values = np.array([1.0, 0.0, 0.5, np.nan, 0.25, 1.0])
    sizes = np.array([2, 3, 5, 5, 20, 40])
    result = mean_by_size(values, sizes, [3, 6])
    # K1-3: (1 + 0)/2; K4-6: 0.5 (the NaN query counted, not averaged); K7+: (0.25 + 1)/2.
    assert result == {"K1-3": (0.5, 2), "K4-6": (0.5, 2), "K7+": (0.625, 2)}
    only_nan = mean_by_size(np.array([np.nan]), np.array([4]), [3])
    assert math.isnan(only_nan["K4+"][0]) and only_nan["K4+"][1] == 1
