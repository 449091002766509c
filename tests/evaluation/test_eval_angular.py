"""Angular diagnostics: hand-computed angles and a per-class loop reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from leap_core.evaluation.angular import class_angular_stats


def _at(angles: list[float], radius: float = 1.0) -> np.ndarray:
    return radius * np.stack([np.cos(angles), np.sin(angles)], 1)


def test_hand_computed_angles() -> None:
    # Class 0: unit vectors at ±0.2 rad → centre at 0, angles .2 and .2: mean .2, var 0.
    # Class 1: at π/2 + (-.3, 0, +.3), lengths 3 (normalised away) → centre π/2,
    #   angles .3, 0, .3: mean .2, unbiased var = (.1² + .2² + .1²) / 2 = .03.
    # Class 2: no sample → count 0, NaN. Class 3: one sample → angle 0, variance NaN.
    feats = np.concatenate(
        [
            _at([0.2, -0.2]),
            _at([math.pi / 2 - 0.3, math.pi / 2, math.pi / 2 + 0.3], 3.0),
            _at([1.0]),
        ]
    )
    stats = class_angular_stats(feats, [0, 0, 1, 1, 1, 3], num_classes=4)
    np.testing.assert_array_equal(stats.counts, [2, 3, 0, 1])
    np.testing.assert_allclose(stats.mean[[0, 1, 3]], [0.2, 0.2, 0.0], atol=1e-7)
    np.testing.assert_allclose(stats.variance[[0, 1]], [0.0, 0.03], atol=1e-7)
    assert np.isnan(stats.mean[2]) and np.isnan(stats.variance[2]) and np.isnan(stats.variance[3])


def test_head_tail_averages() -> None:
    # Same classes as above; head = class 1 (K=3 > T=2): head variance .03, mean .2;
    # tail = classes 0, 2, 3, of which only class 0 has a variance (0).
    feats = np.concatenate(
        [_at([0.2, -0.2]), _at([math.pi / 2 - 0.3, math.pi / 2, math.pi / 2 + 0.3]), _at([1.0])]
    )
    stats = class_angular_stats(feats, [0, 0, 1, 1, 1, 3], num_classes=4)
    summary = stats.head_tail(stats.head_mask(threshold=2))
    assert summary == pytest.approx(
        {
            "head_angle_mean": 0.2,
            "head_angle_variance": 0.03,
            "head_classes": 1.0,
            "tail_angle_mean": 0.2,
            "tail_angle_variance": 0.0,
            "tail_classes": 1.0,
        },
        abs=1e-7,
    )
    empty = stats.head_tail([False] * 4)
    assert math.isnan(empty["head_angle_variance"]) and empty["head_classes"] == 0.0


def test_matches_per_class_loop() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 30, 600)
    feats = rng.standard_normal((30, 16))[labels] + 0.5 * rng.standard_normal((600, 16))
    stats = class_angular_stats(feats.astype(np.float32), labels)
    for c in range(30):
        f = feats[labels == c]
        f = f / np.linalg.norm(f, axis=1, keepdims=True)
        centre = f.mean(0) / np.linalg.norm(f.mean(0))
        angles = np.arccos(np.clip(f @ centre, -1, 1))
        assert stats.mean[c] == pytest.approx(angles.mean(), abs=2e-6)
        assert stats.variance[c] == pytest.approx(angles.var(ddof=1), abs=2e-6)


def test_bad_labels() -> None:
    with pytest.raises(ValueError, match="labels must be non-negative, got -1"):
        class_angular_stats(np.ones((2, 3)), [0, -1])
    with pytest.raises(ValueError, match="num_classes must exceed the largest label 4"):
        class_angular_stats(np.ones((2, 3)), [0, 4], num_classes=3)
    with pytest.raises(ValueError, match="labels must have length 2, got 3"):
        class_angular_stats(np.ones((2, 3)), [0, 1, 1])
