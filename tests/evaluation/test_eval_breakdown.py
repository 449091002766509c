"""Head / tail breakdowns of per-query results."""

from __future__ import annotations

import math

import numpy as np
import pytest

from leap_core.evaluation.breakdown import (
    head_query_mask,
    head_tail_identification,
    head_tail_reid,
)
from leap_core.evaluation.face import IdentificationResult
from leap_core.evaluation.reid import rank_queries


def test_reid_breakdown_by_query_identity() -> None:
    # Gallery: g0 pid 1 cam 1, g1 pid 2 cam 1, g2 pid 3 cam 1 (queries on cam 0).
    # q0 (pid 1) ranks g0 first: AP 1, rank-1 hit.
    # q1 (pid 2) ranks g0, g2, then g1: AP 1/3, rank-1 miss.
    # q2 (pid 3) ranks g2 first: AP 1.
    # Head identities {1}: head mAP 1, rank1 1; tail (q1, q2): mAP (1/3 + 1)/2 = 2/3, rank1 1/2.
    dist = np.array([[0.1, 0.5, 0.6], [0.1, 0.3, 0.2], [0.5, 0.6, 0.1]])
    result = rank_queries(dist, [1, 2, 3], [1, 2, 3], [0, 0, 0], [1, 1, 1], max_rank=3)
    head = head_query_mask([1, 2, 3], head_ids=[1, 7])
    np.testing.assert_array_equal(head, [True, False, False])
    metrics = head_tail_reid(result, head, ranks=(1,))
    assert metrics["head/mAP"] == pytest.approx(1.0)
    assert metrics["head/rank1"] == pytest.approx(1.0)
    assert metrics["tail/mAP"] == pytest.approx(2 / 3)
    assert metrics["tail/rank1"] == pytest.approx(0.5)
    assert metrics["tail/num_valid_queries"] == 2.0


def test_empty_group_is_nan_with_zero_count() -> None:
    result = rank_queries(np.array([[0.1, 0.2]]), [1], [1, 2], [0], [1, 1], max_rank=2)
    metrics = head_tail_reid(result, [True], ranks=(1,))
    assert math.isnan(metrics["tail/mAP"]) and metrics["tail/num_valid_queries"] == 0.0
    with pytest.raises(ValueError, match="head must have length 1, got 2"):
        head_tail_reid(result, [True, False])


def test_identification_breakdown() -> None:
    # Pairs: probe 0 twice (hit, miss), probe 1 once (hit); probe 0 is head.
    result = IdentificationResult(
        np.array([0, 0, 1]), np.array([0, 1, 2]), np.array([True, False, True]), 10
    )
    metrics = head_tail_identification(result, [True, False])
    assert metrics == pytest.approx(
        {"head/rank1": 0.5, "head/num_pairs": 2.0, "tail/rank1": 1.0, "tail/num_pairs": 1.0}
    )
