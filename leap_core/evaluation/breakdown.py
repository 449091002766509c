"""Head / tail breakdown of test metrics.

When test identities were seen in training (face and identity-folder setups), the question
LEAP answers is whether tail identities gain without head identities losing. These helpers
split per-query results by a boolean head mask (one entry per query) and report each group
under ``head/…`` and ``tail/…`` keys; group sizes are reported too, so an empty group shows
up as ``NaN`` with a count of 0 rather than as a number.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from leap_core.evaluation._validation import bool_vector, int_vector
from leap_core.evaluation.face import IdentificationResult
from leap_core.evaluation.reid import RankResult


def head_query_mask(query_ids: Any, head_ids: Any) -> np.ndarray:
    """True for each query whose identity is one of ``head_ids`` (e.g. the training
    identities with ``K_i > T``)."""
    return np.isin(int_vector("query_ids", query_ids), int_vector("head_ids", head_ids))


def head_tail_reid(
    result: RankResult, head: Any, ranks: Iterable[int] = (1, 5, 10)
) -> dict[str, float]:
    """``head/mAP``, ``tail/rank1``, … from per-query ranking results and a head mask."""
    mask = bool_vector("head", head, result.num_queries)
    ranks = tuple(ranks)
    out: dict[str, float] = {}
    for name, group in (("head", mask), ("tail", ~mask)):
        for key, value in result.subset(group).as_dict(ranks).items():
            out[f"{name}/{key}"] = value
    return out


def head_tail_identification(result: IdentificationResult, head: Any) -> dict[str, float]:
    """``head/rank1`` and ``tail/rank1`` over (probe, mate) pairs; ``head`` is per probe."""
    num_probes = int(result.probe_index.max()) + 1 if result.probe_index.size else 0
    mask = bool_vector("head", head)
    if mask.shape[0] < num_probes:
        raise ValueError(
            f"head must have one entry per probe (at least {num_probes}), got {mask.shape[0]}"
        )
    pair_head = mask[result.probe_index]
    out: dict[str, float] = {}
    for name, group in (("head", pair_head), ("tail", ~pair_head)):
        hits = result.hits[group]
        out[f"{name}/rank1"] = float(hits.mean()) if hits.size else float("nan")
        out[f"{name}/num_pairs"] = float(hits.size)
    return out
