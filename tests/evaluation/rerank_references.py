"""Slow, loop-by-loop renderings of k-reciprocal re-ranking, the oracles of the re-ranking
tests: one of the paper's equations with Python sets, one of the order of operations of the
authors' released numpy code."""

from __future__ import annotations

import numpy as np


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


def rerank_as_released(
    q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray, k1: int, k2: int, lam: float
) -> np.ndarray:
    """The authors' released procedure step by step (Zhong et al. 2017, their numpy code):
    column-normalised squared distances, reciprocal index lists, the 2/3 expansion test,
    ``V`` normalised over its members (an empty set leaves a zero row), query expansion
    over the ``k2`` nearest, and Σ min accumulated through an inverted index of ``V``'s
    columns with ``Σ max`` taken as ``2 - Σ min``. The one deliberate difference: a stable
    sort, where the original's quicksort leaves the order of tied distances unspecified."""
    num_q = q_g.shape[0]
    d = (np.block([[q_q, q_g], [q_g.T, g_g]]).astype(np.float32)) ** 2
    d = (d / d.max(axis=0)).T  # symmetric input: the column maxima are the row maxima
    n = d.shape[0]
    initial = np.argsort(d, axis=1, kind="stable")
    v = np.zeros((n, n), dtype=np.float64)
    half_k = int(np.around(k1 / 2))
    for i in range(n):
        forward = initial[i, : k1 + 1]
        backward = initial[forward, : k1 + 1]
        reciprocal = forward[np.where(backward == i)[0]]
        expansion = reciprocal
        for candidate in reciprocal:
            c_forward = initial[candidate, : half_k + 1]
            c_backward = initial[c_forward, : half_k + 1]
            c_reciprocal = c_forward[np.where(c_backward == candidate)[0]]
            if len(np.intersect1d(c_reciprocal, reciprocal)) > 2 / 3 * len(c_reciprocal):
                expansion = np.append(expansion, c_reciprocal)
        expansion = np.unique(expansion)
        weight = np.exp(-d[i, expansion].astype(np.float64))
        if expansion.size:
            v[i, expansion] = weight / weight.sum()
    if k2 != 1:
        v = np.stack([v[initial[i, :k2]].mean(axis=0) for i in range(n)])
    by_column = [np.where(v[:, m] != 0)[0] for m in range(n)]
    final = np.empty((num_q, n - num_q))
    for i in range(num_q):
        shared = np.zeros(n)
        for m in np.where(v[i] != 0)[0]:
            rows = by_column[m]
            shared[rows] += np.minimum(v[i, m], v[rows, m])
        jaccard = 1 - shared / (2 - shared)
        final[i] = ((1 - lam) * jaccard + lam * d[i])[num_q:]
    return final
