"""k-reciprocal re-ranking against a straightforward set-based rendering of the paper."""

from __future__ import annotations

import numpy as np
import pytest

from leap_core.evaluation.distance import cosine_distance
from leap_core.evaluation.rerank import re_ranking


def rerank_by_sets(
    q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray, k1: int, k2: int, lam: float
) -> np.ndarray:
    """Zhong et al. 2017, equation by equation, with Python sets and loops."""
    num_q = q_g.shape[0]
    joint = np.block([[q_q, q_g], [q_g.T, g_g]]).astype(np.float32)
    d = joint**2
    d = d / d.max(axis=1, keepdims=True)
    n = d.shape[0]
    order = [np.argsort(d[i], kind="stable") for i in range(n)]

    def nearest(i: int, k: int) -> list[int]:  # N(i, k)
        return [int(j) for j in order[i][:k]]

    def reciprocal(i: int, k: int) -> set[int]:  # eq. 3: R(i, k)
        return {j for j in nearest(i, k + 1) if i in nearest(j, k + 1)}

    v = np.zeros((n, n))
    for i in range(n):
        r = reciprocal(i, k1)
        r_star = set(r)
        for c in r:  # eq. 6
            r_half = reciprocal(c, round(k1 / 2))
            if len(r & r_half) > 2 / 3 * len(r_half):
                r_star |= r_half
        members = sorted(r_star)
        weights = np.exp(-d[i, members].astype(np.float64))  # eq. 7
        v[i, members] = weights / weights.sum()
    if k2 > 1:  # local query expansion
        v = np.stack([v[nearest(i, k2)].mean(0) for i in range(n)])
    final = np.empty((num_q, n - num_q))
    for i in range(num_q):
        for j in range(num_q, n):  # eq. 10-12 with Σ max computed directly
            jaccard = 1 - np.minimum(v[i], v[j]).sum() / np.maximum(v[i], v[j]).sum()
            final[i, j - num_q] = (1 - lam) * jaccard + lam * d[i, j]
    return final


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
