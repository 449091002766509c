"""The slow reference: the classic per-query Market-1501 loop, written for clarity.

It exists so that the vectorised :mod:`leap_core.evaluation.reid` can be checked against
the protocol as torchreid's python ``eval_market1501`` states it, and so the benchmark can
time the straightforward approach. Do not use it for real evaluation: it sorts every row.
"""

from __future__ import annotations

import numpy as np


def eval_market1501_reference(
    distmat: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    max_rank: int = 50,
) -> tuple[np.ndarray, float, float, np.ndarray, int]:
    """``(cmc, mAP, mINP, per_query_AP, num_skipped)`` by one Python loop over queries.

    Rows are ranked with ``np.argsort(kind="stable")``, so equal distances keep gallery
    order. A query whose gallery, after removing its same-pid same-camera entries, holds no
    true match is skipped. If the gallery is smaller than ``max_rank`` the CMC is cut to the
    gallery size; a query's junk-free ranking shorter than ``max_rank`` is padded with its
    last CMC value (1, since skipped queries are excluded).
    """
    num_q, num_g = distmat.shape
    max_rank = min(max_rank, num_g)
    all_cmc, all_ap, all_inp = [], [], []
    per_query_ap = np.full(num_q, np.nan)
    skipped = 0
    for q in range(num_q):
        order = np.argsort(distmat[q], kind="stable")
        keep = ~((g_pids[order] == q_pids[q]) & (g_camids[order] == q_camids[q]))
        raw_cmc = (g_pids[order] == q_pids[q])[keep].astype(np.int64)
        if not raw_cmc.any():
            skipped += 1
            continue
        cmc = raw_cmc.cumsum()
        cmc[cmc > 1] = 1
        cmc = cmc[:max_rank]
        if cmc.shape[0] < max_rank:
            cmc = np.concatenate([cmc, np.full(max_rank - cmc.shape[0], cmc[-1])])
        all_cmc.append(cmc)
        positions = np.flatnonzero(raw_cmc)
        all_inp.append(raw_cmc.sum() / (positions[-1] + 1.0))
        hits_so_far = raw_cmc.cumsum()
        precision = hits_so_far / (np.arange(raw_cmc.shape[0]) + 1.0)
        ap = float((precision * raw_cmc).sum() / raw_cmc.sum())
        all_ap.append(ap)
        per_query_ap[q] = ap
    if not all_cmc:
        raise ValueError("no query has a true match in the gallery")
    cmc_mean = np.asarray(all_cmc, dtype=np.float64).sum(0) / len(all_cmc)
    return cmc_mean, float(np.mean(all_ap)), float(np.mean(all_inp)), per_query_ap, skipped
