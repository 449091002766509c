"""Per-query figures averaged by the size of the query's training class.

A long tail is not one tail: a class of 2 images and one of 10 are both "tail" under a
threshold of 10, and a per-class method (the feature cloud) can only show what it adds where
class sizes vary. So the end-of-run diagnostics also report their unseen-image figures by
bins of ``K_i``, the class's number of training images. Bins are given by their upper edges:
``[1, 3, 6, 10]`` means ``K1``, ``K2-3``, ``K4-6``, ``K7-10`` and ``K11+``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def size_bins(edges: Sequence[int]) -> list[tuple[int, int | None]]:
    """``(low, high)`` of each bin, inclusive; the last is open (``high`` None)."""
    bins: list[tuple[int, int | None]] = []
    low = 1
    for edge in edges:
        bins.append((low, int(edge)))
        low = int(edge) + 1
    bins.append((low, None))
    return bins


def bin_name(low: int, high: int | None) -> str:
    """``K1``, ``K2-3``, ``K11+``."""
    if high is None:
        return f"K{low}+"
    return f"K{low}" if low == high else f"K{low}-{high}"


def mean_by_size(
    values: np.ndarray, sizes: np.ndarray, edges: Sequence[int]
) -> dict[str, tuple[float, int]]:
    """For each bin with at least one query: ``(mean of values, number of queries)``.
    ``sizes[q]`` is ``K_i`` of query ``q``'s class; NaN values (skipped queries) are left
    out of the mean but counted."""
    result: dict[str, tuple[float, int]] = {}
    for low, high in size_bins(edges):
        chosen = (sizes >= low) & (sizes <= (high if high is not None else np.inf))
        if not chosen.any():
            continue
        picked = values[chosen]
        finite = picked[~np.isnan(picked)]
        result[bin_name(low, high)] = (
            float(finite.mean()) if finite.size else float("nan"),
            int(chosen.sum()),
        )
    return result
