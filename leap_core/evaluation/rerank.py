"""k-reciprocal re-ranking (Zhong et al., CVPR 2017) on dense distance matrices: the reference.

Re-ranking replaces each query-gallery distance by a blend of the original distance and a
Jaccard distance between *k-reciprocal neighbour sets*, which rewards gallery images that
share the query's close, mutual neighbours. It typically adds several mAP points in re-ID.

Conventions (those of the authors' released code, which torchreid and fast-reid ship, so
numbers match what users know):

* the ``N = Q + G`` images form one ``(N, N)`` matrix ``[[q_q, q_g], [q_gᵀ, g_g]]``; it is
  squared and each row divided by its maximum: ``d(i, j)``;
* ``N(i, k)`` are the first ``k`` entries of row ``i`` in ascending ``d`` (stable order, so
  ``i`` itself, at distance 0, comes first): the paper's k-nearest set is ``N(i, k1 + 1)``;
* ``R(i, k) = {j ∈ N(i, k + 1) : i ∈ N(j, k + 1)}`` (eq. 3);
* ``R*(i) = R(i, k1) ∪ R(c, round(k1 / 2))`` over ``c ∈ R(i, k1)`` with
  ``|R(i, k1) ∩ R(c, round(k1/2))| > 2/3 |R(c, round(k1/2))|`` (eq. 6; strict, as the code);
* ``V[i, j] = exp(-d(i, j))`` on ``R*(i)``, normalised to sum 1 (eq. 7 with the code's
  normalisation), then local query expansion ``V[i] ← mean of V[j] for j ∈ N(i, k2)``;
* ``d_J(i, j) = 1 - Σ min(V_i, V_j) / Σ max(V_i, V_j)``, where ``Σ max = 2 - Σ min``
  because rows sum to 1 (eq. 10-11); final ``d* = (1 - λ) d_J + λ d`` (eq. 12).

Memory is ``O(N²)`` (the joint matrix and the dense ``V``), like the authors' code: about
1.5 GB per float matrix at Market-1501 (N = 19,281), 35 GB at MSMT17 (N = 93,820). This
is the reference: evaluation re-ranks from the features with
:mod:`leap_core.evaluation.rerank_sparse`, the same result in ``O(N·k1)`` memory.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from leap_core.evaluation._validation import as_numpy, positive_int

_ROWS = 256


def _matrix(name: str, value: Any, shape: tuple[int, int]) -> torch.Tensor:
    array = as_numpy(name, value)
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite, found NaN or inf")
    return torch.as_tensor(array, dtype=torch.float32)


def _reciprocal(neighbours: torch.Tensor) -> torch.Tensor:
    """Mask over ``neighbours[i, a]``: true where ``i`` is also among that image's neighbours."""
    me = torch.arange(neighbours.shape[0])[:, None, None]
    mask = torch.empty(neighbours.shape, dtype=torch.bool)
    for start in range(0, neighbours.shape[0], _ROWS):
        rows = slice(start, start + _ROWS)
        mask[rows] = (neighbours[neighbours[rows]] == me[rows]).any(-1)
    return mask


def re_ranking(
    q_g_dist: Any,
    q_q_dist: Any,
    g_g_dist: Any,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
) -> np.ndarray:
    """Re-ranked ``(Q, G)`` float32 distances; inputs are any symmetric distances.

    ``k1`` sizes the reciprocal neighbourhoods, ``k2`` the query expansion, and
    ``lambda_value`` in ``[0, 1]`` the weight of the original distance (paper: 20, 6, 0.3).
    """
    k1, k2 = positive_int("k1", k1), positive_int("k2", k2)
    if (
        isinstance(lambda_value, bool)
        or not isinstance(lambda_value, int | float)
        or not (0.0 <= float(lambda_value) <= 1.0)
    ):
        raise ValueError(f"lambda_value must be a number in [0, 1], got {lambda_value!r}")
    q_g = as_numpy("q_g_dist", q_g_dist)
    if q_g.ndim != 2 or 0 in q_g.shape:
        raise ValueError(f"q_g_dist must be a non-empty 2-D matrix, got shape {q_g.shape}")
    num_q, num_g = q_g.shape
    n = num_q + num_g
    joint = torch.cat(
        [
            torch.cat(
                [
                    _matrix("q_q_dist", q_q_dist, (num_q, num_q)),
                    _matrix("q_g_dist", q_g, (num_q, num_g)),
                ],
                1,
            ),
            torch.cat(
                [
                    _matrix("q_g_dist", q_g, (num_q, num_g)).t(),
                    _matrix("g_g_dist", g_g_dist, (num_g, num_g)),
                ],
                1,
            ),
        ],
        0,
    )
    dist = joint.pow_(2)
    dist /= dist.amax(1, keepdim=True).clamp_(min=torch.finfo(torch.float32).tiny)

    width = min(max(k1 + 1, k2), n)
    rank = torch.empty((n, width), dtype=torch.int64)
    for start in range(0, n, _ROWS):
        block = dist[start : start + _ROWS]
        rank[start : start + _ROWS] = torch.sort(block, dim=1, stable=True).indices[:, :width]

    near = rank[:, : min(k1 + 1, n)]
    near_mask = _reciprocal(near)
    half = rank[:, : min(round(k1 / 2) + 1, n)]
    half_mask = _reciprocal(half)
    half_size = half_mask.sum(1)

    member = torch.zeros((n, n), dtype=torch.bool)
    image = torch.arange(n)
    for start in range(0, n, _ROWS):
        rows = slice(start, start + _ROWS)
        cand = near[rows]  # (b, k) candidates c of each image
        cand_ok = near_mask[rows]
        cand_half = half[cand]  # (b, k, h): R(c, k1/2) before its reciprocity mask
        cand_half_ok = half_mask[cand]
        # |R(i) ∩ R(c, k1/2)|: entries of R(c, k1/2) that are reciprocal members of R(i).
        in_r = ((cand_half[..., None] == cand[:, None, None, :]) & cand_ok[:, None, None, :]).any(
            -1
        )
        overlap = (in_r & cand_half_ok).sum(-1)
        accept = cand_ok & (overlap * 3 > 2 * half_size[cand])
        own = image[rows]
        row_ids = own[:, None].expand_as(cand)
        member[row_ids[cand_ok], cand[cand_ok]] = True
        grow = accept[..., None] & cand_half_ok
        member[row_ids[..., None].expand_as(cand_half)[grow], cand_half[grow]] = True

    weights = torch.where(member, torch.exp(-dist), 0.0)
    del member
    # An image with an exact duplicate of lower index can have no reciprocal neighbour
    # at all: its row stays zero (its Jaccard distances are 1), as in the authors' code.
    v = weights / weights.sum(1, keepdim=True).clamp_(min=torch.finfo(torch.float32).tiny)
    del weights
    if k2 > 1:
        expanded = torch.zeros_like(v)
        for t in range(min(k2, width)):
            expanded += v[rank[:, t]]
        v = expanded / min(k2, width)

    gallery_t = v[num_q:].t().contiguous()  # (n, G): column m of every gallery row
    shared = torch.empty((num_q, num_g), dtype=torch.float32)
    for i in range(num_q):
        nz = torch.nonzero(v[i]).squeeze(1)
        shared[i] = torch.minimum(v[i, nz][:, None], gallery_t[nz]).sum(0)
    jaccard = 1.0 - shared / (2.0 - shared)
    final = (1.0 - lambda_value) * jaccard + lambda_value * dist[:num_q, num_q:]
    return final.numpy()
