"""The dense k-reciprocal re-ranking against renderings of the paper and of the authors' code."""

from __future__ import annotations

import numpy as np
import pytest

from leap_core.evaluation.distance import cosine_distance
from leap_core.evaluation.rerank import re_ranking
from tests.evaluation.rerank_references import rerank_as_released, rerank_by_sets


def _distances(seed: int, num_q: int, num_g: int, clusters: int):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, 8))
    feats = centres[rng.integers(0, clusters, num_q + num_g)] + 0.6 * rng.standard_normal(
        (num_q + num_g, 8)
    )
    q, g = feats[:num_q], feats[num_q:]
    return cosine_distance(q, g), cosine_distance(q, q), cosine_distance(g, g)


@pytest.mark.parametrize(("k1", "k2", "lam"), [(6, 3, 0.3), (5, 1, 0.5), (4, 2, 0.0)])
def test_matches_set_based_reference(k1: int, k2: int, lam: float) -> None:
    q_g, q_q, g_g = _distances(k1 + k2, 9, 27, 5)
    ours = re_ranking(q_g, q_q, g_g, k1=k1, k2=k2, lambda_value=lam)
    expected = rerank_by_sets(q_g, q_q, g_g, k1, k2, lam)
    assert ours.shape == (9, 27)
    np.testing.assert_allclose(ours, expected, atol=2e-6)


def test_lambda_one_returns_the_normalised_original_distance() -> None:
    # λ = 1 keeps only d(i, j) = dist² / (max of the row over all N images).
    q_g, q_q, g_g = _distances(1, 4, 10, 3)
    joint = np.block([[q_q, q_g], [q_g.T, g_g]]).astype(np.float32) ** 2
    expected = joint[:4, 4:] / joint[:4].max(axis=1, keepdims=True)
    np.testing.assert_allclose(re_ranking(q_g, q_q, g_g, 3, 2, 1.0), expected, rtol=1e-6)


def test_nearest_gallery_stays_in_the_query_cluster() -> None:
    # Two well separated clusters: each query's re-ranked nearest gallery image, and all of
    # its cluster, must come before any image of the other cluster.
    rng = np.random.default_rng(4)
    centres = np.array([[5.0, 0, 0, 0], [0, 5.0, 0, 0]])
    q_lab, g_lab = np.array([0, 1, 0, 1]), np.repeat([0, 1], 15)
    q = centres[q_lab] + 0.3 * rng.standard_normal((4, 4))
    g = centres[g_lab] + 0.3 * rng.standard_normal((30, 4))
    final = re_ranking(
        cosine_distance(q, g), cosine_distance(q, q), cosine_distance(g, g), k1=6, k2=3
    )
    for i in range(4):
        same, other = final[i, g_lab == q_lab[i]], final[i, g_lab != q_lab[i]]
        assert same.max() < other.min()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k1": 0}, "k1 must be a positive integer"),
        ({"lambda_value": 1.5}, "lambda_value must be a number in"),
        ({"q_q_dist": np.zeros((3, 3))}, r"q_q_dist must have shape \(2, 2\)"),
        ({"g_g_dist": np.full((3, 3), np.nan)}, "g_g_dist must be finite"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    args = {"q_g_dist": np.ones((2, 3)), "q_q_dist": np.zeros((2, 2)), "g_g_dist": np.zeros((3, 3))}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        re_ranking(**args)


def _duplicates(seed: int, num_q: int, num_g: int, groups: int):
    """Images that are exact copies of one of ``groups`` one-hot features: every distance
    is exactly 0 or 1, so neighbour order is decided by ties alone, and an image with
    more lower-index copies than ``k1 + 1`` has no reciprocal neighbour at all."""
    labels = np.random.default_rng(seed).integers(0, groups, num_q + num_g)
    feats = np.eye(groups + 2, dtype=np.float32)[labels]
    return feats[:num_q], feats[num_q:]


@pytest.mark.parametrize(("k1", "k2", "lam"), [(6, 3, 0.3), (3, 1, 0.3), (20, 6, 0.5)])
def test_matches_the_released_procedure_on_random_and_tied_distances(
    k1: int, k2: int, lam: float
) -> None:
    q_g, q_q, g_g = _distances(k1, 12, 40, 4)
    np.testing.assert_allclose(
        re_ranking(q_g, q_q, g_g, k1, k2, lam),
        rerank_as_released(q_g, q_q, g_g, k1, k2, lam),
        atol=2e-6,
    )
    q, g = _duplicates(k1, 10, 50, 5)
    tied = cosine_distance(q, g), cosine_distance(q, q), cosine_distance(g, g)
    ours = re_ranking(*tied, k1, k2, lam)
    assert np.isfinite(ours).all()
    np.testing.assert_allclose(ours, rerank_as_released(*tied, k1, k2, lam), atol=2e-6)
