"""Cosine distances in blocks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from leap_core.evaluation.distance import cosine_distance, iter_cosine_distance


def test_hand_computed_cosine_distance() -> None:
    # q0 = (1, 0), q1 = (1, 1); g0 = (0, 3), g1 = (2, 0).
    # d = 1 - cos: q0-g0: 1 - 0 = 1; q0-g1: 1 - 1 = 0; q1-g0: q1-g1: 1 - 1/√2.
    d = cosine_distance(
        np.array([[1.0, 0.0], [1.0, 1.0]], np.float32),
        np.array([[0.0, 3.0], [2.0, 0.0]], np.float32),
    )
    assert d.dtype == np.float32
    np.testing.assert_allclose(d, [[1, 0], [1 - 2**-0.5, 1 - 2**-0.5]], atol=1e-6)


def test_blocks_equal_the_full_matrix() -> None:
    rng = np.random.default_rng(0)
    q, g = rng.standard_normal((23, 7)), rng.standard_normal((11, 7))
    full = cosine_distance(q, g, chunk_size=1000)
    assert full.dtype == np.float64
    np.testing.assert_allclose(cosine_distance(q, g, chunk_size=4), full, atol=1e-12)
    blocks = list(iter_cosine_distance(torch.from_numpy(q), g, chunk_size=5))
    assert [start for start, _ in blocks] == [0, 5, 10, 15, 20]
    np.testing.assert_allclose(torch.cat([b for _, b in blocks]).numpy(), full, atol=1e-12)


def test_bad_features() -> None:
    with pytest.raises(ValueError, match="same feature dimension, got 3 and 4"):
        cosine_distance(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="query must be finite"):
        cosine_distance(np.array([[np.nan, 1.0]]), np.ones((2, 2)))
    with pytest.raises(ValueError, match="chunk_size must be a positive integer, got 0"):
        cosine_distance(np.ones((2, 2)), np.ones((2, 2)), chunk_size=0)
