"""k-reciprocal re-ranking from features, in memory that grows with ``N·k``, not ``N²``.

The result is that of :func:`leap_core.evaluation.rerank.re_ranking` (the dense reference,
which follows the authors' released code) on the cosine distances of the features, but no
``(N, N)`` matrix is ever held, where ``N = Q + G``. Re-ranking only ever reads each
image's ``k1 + 1`` nearest neighbours, their reciprocal sets and a ``k2``-row query
expansion, so the encoding ``V`` has a few dozen non-zeros per row, and the Jaccard
distance of a (query, gallery) pair is non-trivial only when their rows share a column.

Four stages, each over blocks of rows:

1. **neighbours**: a block of rows of the joint cosine distance (a matrix product with all
   features), squared and divided by its row maximum as the reference does; only the row
   maximum and the first ``max(k1 + 1, k2)`` entries in stable order are kept;
2. **encoding**: the sets ``R*(i)`` exactly as the reference builds them, as (row, column)
   pairs; their weights ``exp(-d)`` recomputed from the features for those pairs alone;
   rows normalised to sum 1: a sparse ``V`` (compressed rows);
3. **query expansion**: row ``i`` becomes the mean of the rows of its ``k2`` nearest, again
   sparse;
4. **distances**: for a block of query rows, ``Σ min(V_i, V_j)`` over the columns they share
   with gallery rows, found through an index of the gallery rows by column; then the
   Jaccard distance and the blend with the original distance of the block, which is handed
   to the caller before the next block is computed (the ranking consumes it as it comes).

Memory beyond the features: the neighbour lists and ``V`` (``O(N·k)``), one block of
``rows × N`` distances in stage 1 and one of ``rows × G`` in stage 4. Time is dominated by
stage 1's ``N² D`` multiply-adds, the same product the dense path needs to build its input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from leap_core.evaluation._validation import feature_matrix, positive_int
from leap_core.evaluation.distance import normalize

#: Distances per block held at once in stages 1 and 4 (float32 elements, 32 MiB).
BLOCK_ELEMENTS = 2**23

#: Most (query entry, gallery entry) pairs expanded at once in stage 4.
PAIRS_PER_CHUNK = 2**21

_TINY = torch.finfo(torch.float32).tiny


@dataclass(frozen=True)
class _Rows:
    """A sparse row matrix in compressed form: row ``r`` holds columns
    ``indices[indptr[r]:indptr[r + 1]]`` (ascending) with ``values`` there."""

    indptr: torch.Tensor
    indices: torch.Tensor
    values: torch.Tensor

    def gather(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(owner, column, value)`` of every entry of ``rows``; ``owner`` indexes ``rows``."""
        starts, counts = self.indptr[rows], self.indptr[rows + 1] - self.indptr[rows]
        owner = torch.repeat_interleave(torch.arange(rows.shape[0]), counts)
        first = torch.cumsum(counts, 0) - counts
        slot = starts[owner] + torch.arange(int(counts.sum())) - first[owner]
        return owner, self.indices[slot], self.values[slot]


def _check_lambda(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"lambda_value must be a number in [0, 1], got {value!r}")
    return float(value)


def _rows_per_block(width: int, rows_per_block: int | None) -> int:
    if rows_per_block is not None:
        return positive_int("rows_per_block", rows_per_block)
    return max(1, BLOCK_ELEMENTS // max(width, 1))


def _distance_block(rows: torch.Tensor, columns_t: torch.Tensor) -> torch.Tensor:
    """``(1 - cos)²`` as float32, computed as the reference's float32 joint matrix is."""
    return (rows @ columns_t).neg_().add_(1.0).float().pow_(2)


def _first_in_order(block: torch.Tensor, width: int) -> torch.Tensor:
    """Column indices of each row's ``width`` smallest entries, ascending, ties in column
    order (what a stable sort of the row gives). Entries are non-negative floats, whose
    bit patterns order as integers, so (row, value) packs into one int64 sort key."""
    kth = torch.topk(block, width, dim=1, largest=False, sorted=True).values[:, -1:]
    rows, cols = torch.nonzero(block <= kth, as_tuple=True)  # row-major: columns ascend
    bits = block[rows, cols].view(torch.int32).to(torch.int64)
    order = torch.sort((rows << 32) | bits, stable=True).indices
    rows, cols = rows[order], cols[order]
    counts = torch.bincount(rows, minlength=block.shape[0])
    place = torch.arange(rows.shape[0]) - (torch.cumsum(counts, 0) - counts)[rows]
    keep = place < width
    out = torch.empty((block.shape[0], width), dtype=torch.int64)
    out[rows[keep], place[keep]] = cols[keep]
    return out


def _pair_distance(features: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``(1 - cos)²`` of the listed pairs only, a bounded number of feature rows at a time."""
    out = torch.empty(rows.shape[0], dtype=torch.float32)
    step = max(1, BLOCK_ELEMENTS // features.shape[1])
    for start in range(0, rows.shape[0], step):
        r, c = rows[start : start + step], cols[start : start + step]
        dots = (features[r] * features[c]).sum(1)
        out[start : start + step] = dots.neg_().add_(1.0).float().pow_(2)
    return out


def _neighbours(
    features: torch.Tensor, width: int, rows: int, tick: Callable[[int], None]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 1: ``(N, width)`` neighbours in the reference's order, and each row's maximum
    squared distance (its normaliser)."""
    n = features.shape[0]
    features_t = features.t().contiguous()
    order = torch.empty((n, width), dtype=torch.int64)
    scale = torch.empty(n, dtype=torch.float32)
    for start in range(0, n, rows):
        block = _distance_block(features[start : start + rows], features_t)
        top = block.amax(1).clamp_(min=_TINY)
        block /= top[:, None]
        scale[start : start + block.shape[0]] = top
        order[start : start + block.shape[0]] = _first_in_order(block, width)
        tick(block.shape[0])
    return order, scale


def _reciprocal(neighbours: torch.Tensor, rows: int) -> torch.Tensor:
    """Mask over ``neighbours[i, a]``: true where ``i`` is also among that image's."""
    n = neighbours.shape[0]
    mask = torch.empty(neighbours.shape, dtype=torch.bool)
    for start in range(0, n, rows):
        me = torch.arange(start, min(start + rows, n))[:, None, None]
        mask[start : start + rows] = (neighbours[neighbours[start : start + rows]] == me).any(-1)
    return mask


def _encoding(
    features: torch.Tensor, order: torch.Tensor, scale: torch.Tensor, k1: int, rows: int
) -> _Rows:
    """Stage 2: ``V[i] ∝ exp(-d(i, ·))`` on ``R*(i)``, rows summing to 1 (eq. 6-7)."""
    n = order.shape[0]
    near = order[:, : min(k1 + 1, n)]
    near_ok = _reciprocal(near, rows)
    half = order[:, : min(round(k1 / 2) + 1, n)]
    half_ok = _reciprocal(half, rows)
    half_size = half_ok.sum(1)
    indptr = torch.zeros(n + 1, dtype=torch.int64)
    indices, values = [], []
    for start in range(0, n, rows):
        cand, cand_ok = near[start : start + rows], near_ok[start : start + rows]
        cand_half, cand_half_ok = half[cand], half_ok[cand]
        # |R(i) ∩ R(c, k1/2)|: entries of R(c, k1/2) that are reciprocal members of R(i).
        in_r = ((cand_half[..., None] == cand[:, None, None, :]) & cand_ok[:, None, None, :]).any(
            -1
        )
        accept = cand_ok & ((in_r & cand_half_ok).sum(-1) * 3 > 2 * half_size[cand])
        own = torch.arange(start, start + cand.shape[0])[:, None]
        grow = accept[..., None] & cand_half_ok
        member_rows = torch.cat(
            [own.expand_as(cand)[cand_ok], own[..., None].expand_as(grow)[grow]]
        )
        member_cols = torch.cat([cand[cand_ok], cand_half[grow]])
        keys = torch.unique(member_rows * n + member_cols)  # sorted: rows, then columns
        r, c = keys // n, keys % n
        w = torch.exp(-_pair_distance(features, r, c) / scale[r])
        local = r - start
        totals = torch.zeros(cand.shape[0], dtype=torch.float32).index_add_(0, local, w)
        indptr[start + 1 : start + cand.shape[0] + 1] = torch.bincount(
            local, minlength=cand.shape[0]
        )
        indices.append(c)
        values.append(w / totals[local])
    return _Rows(torch.cumsum(indptr, 0), torch.cat(indices), torch.cat(values))


def _expand(v: _Rows, order: torch.Tensor, k2: int, rows: int) -> _Rows:
    """Stage 3: local query expansion, ``V[i] ← mean of V[j]`` over ``j ∈ N(i, k2)``."""
    n = order.shape[0]
    take = min(k2, order.shape[1])
    indptr = torch.zeros(n + 1, dtype=torch.int64)
    indices, values = [], []
    for start in range(0, n, rows):
        sources = order[start : start + rows, :take]
        owner, cols, vals = v.gather(sources.reshape(-1))
        local = owner // take
        keys, inverse = torch.unique(local * n + cols, return_inverse=True)
        sums = torch.zeros(keys.shape[0], dtype=torch.float32).index_add_(0, inverse, vals)
        indptr[start + 1 : start + sources.shape[0] + 1] = torch.bincount(
            keys // n, minlength=sources.shape[0]
        )
        indices.append(keys % n)
        values.append(sums / take)
    return _Rows(torch.cumsum(indptr, 0), torch.cat(indices), torch.cat(values))


def _by_column(v: _Rows, first_row: int, n: int) -> _Rows:
    """The rows from ``first_row`` on, indexed by column: "row" ``m`` lists the gallery
    rows (counted from ``first_row``) that have column ``m``, with their values."""
    begin = int(v.indptr[first_row])
    counts = v.indptr[first_row + 1 :] - v.indptr[first_row:-1]
    owner = torch.repeat_interleave(torch.arange(counts.shape[0]), counts)
    cols, vals = v.indices[begin:], v.values[begin:]
    order = torch.sort(cols, stable=True).indices  # within a column, rows ascend
    indptr = torch.zeros(n + 1, dtype=torch.int64)
    indptr[1:] = torch.cumsum(torch.bincount(cols, minlength=n), 0)
    return _Rows(indptr, owner[order], vals[order])


def _shared_mass(v: _Rows, gallery: _Rows, rows: torch.Tensor, num_gallery: int) -> torch.Tensor:
    """``Σ_m min(V[i, m], V[j, m])`` for the query ``rows`` against every gallery row."""
    owner, cols, vals = v.gather(rows)
    out = torch.zeros(rows.shape[0] * num_gallery, dtype=torch.float32)
    sizes = gallery.indptr[cols + 1] - gallery.indptr[cols]
    ends = torch.cumsum(sizes, 0)
    start = 0
    while start < cols.shape[0]:
        # Entries whose expansion fits one chunk (at least one entry, whatever its size).
        limit = (ends[start] - sizes[start] + PAIRS_PER_CHUNK).reshape(1)
        stop = max(start + 1, int(torch.searchsorted(ends, limit, side="right")))
        chunk = torch.arange(start, stop)
        hit, gallery_row, gallery_value = gallery.gather(cols[chunk])
        mass = torch.minimum(vals[chunk][hit], gallery_value)
        out.index_add_(0, owner[chunk][hit] * num_gallery + gallery_row, mass)
        start = stop
    return out.view(rows.shape[0], num_gallery)


def iter_re_ranking(
    query_features: Any,
    gallery_features: Any,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    rows_per_block: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(first_row, block)``: consecutive rows of the re-ranked ``(Q, G)`` float32
    distances of the features' cosine distances (what :func:`rerank.re_ranking` gives for
    them), each block computed when the previous one has been taken. The arguments are
    checked at the call; the work starts at the first block asked for.

    ``k1``, ``k2`` and ``lambda_value`` are those of :func:`rerank.re_ranking`.
    ``rows_per_block`` overrides the rows per block (by default as many as keep a block near
    :data:`BLOCK_ELEMENTS` distances). ``progress(done, total)`` counts rows: the ``N``
    neighbour rows of stage 1, then the ``Q`` output rows.
    """
    k1, k2 = positive_int("k1", k1), positive_int("k2", k2)
    lam = _check_lambda(lambda_value)
    query = feature_matrix("query_features", query_features)
    gallery = feature_matrix("gallery_features", gallery_features)
    if query.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"query_features and gallery_features must have the same feature dimension, got "
            f"{query.shape[1]} and {gallery.shape[1]}"
        )
    if rows_per_block is not None:
        positive_int("rows_per_block", rows_per_block)
    dtype = torch.float64 if torch.float64 in (query.dtype, gallery.dtype) else torch.float32
    features = torch.cat([normalize(query).to(dtype), normalize(gallery).to(dtype)])
    return _re_ranked_blocks(features, query.shape[0], k1, k2, lam, rows_per_block, progress)


def _re_ranked_blocks(
    features: torch.Tensor,
    num_q: int,
    k1: int,
    k2: int,
    lam: float,
    rows_per_block: int | None,
    progress: Callable[[int, int], None] | None,
) -> Iterator[tuple[int, np.ndarray]]:
    """The four stages over the joint, normalised ``features`` (queries first)."""
    n = features.shape[0]
    num_g = n - num_q
    done = 0

    def tick(rows: int) -> None:
        nonlocal done
        done += rows
        if progress is not None:
            progress(done, n + num_q)

    width = min(max(k1 + 1, k2), n)
    order, scale = _neighbours(features, width, _rows_per_block(n, rows_per_block), tick)
    small = _rows_per_block(width * width * 4, rows_per_block)
    v = _encoding(features, order, scale, k1, small)
    if k2 > 1:
        v = _expand(v, order, k2, small)
    gallery_index = _by_column(v, num_q, n)
    gallery_t = features[num_q:].t().contiguous()
    rows = _rows_per_block(num_g, rows_per_block)
    for start in range(0, num_q, rows):
        stop = min(start + rows, num_q)
        shared = _shared_mass(v, gallery_index, torch.arange(start, stop), num_g)
        jaccard = 1.0 - shared / (2.0 - shared)
        original = _distance_block(features[start:stop], gallery_t) / scale[start:stop, None]
        block = (1.0 - lam) * jaccard + lam * original
        tick(stop - start)
        yield start, block.numpy()


def re_ranking_from_features(
    query_features: Any,
    gallery_features: Any,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    rows_per_block: int | None = None,
) -> np.ndarray:
    """The whole re-ranked ``(Q, G)`` float32 matrix (see :func:`iter_re_ranking`)."""
    blocks = list(
        iter_re_ranking(query_features, gallery_features, k1, k2, lambda_value, rows_per_block)
    )
    return np.concatenate([block for _, block in blocks])
