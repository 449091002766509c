"""Re-ID ranking metrics: hand-computed cases, edge cases, and the per-query reference loop."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from leap_core.evaluation.distance import cosine_distance
from leap_core.evaluation.reid import (
    evaluate_rank,
    rank_queries,
    rank_queries_from_features,
)
from leap_core.evaluation.reid_reference import eval_market1501_reference

# Two queries, six gallery images.
#   q0: pid 1, cam 0. pid-1 gallery: g0 (cam 1, match), g2 (cam 0, junk), g4 (cam 2, match).
#   q1: pid 2, cam 0. pid-2 gallery: g1 (cam 1, match), g5 (cam 0, junk).
HAND_DIST = np.array([[0.5, 0.1, 0.05, 0.3, 0.9, 0.2], [0.4, 0.2, 0.6, 0.1, 0.7, 0.0]])
HAND_Q_PIDS, HAND_Q_CAMS = np.array([1, 2]), np.array([0, 0])
HAND_G_PIDS = np.array([1, 2, 1, 3, 1, 2])
HAND_G_CAMS = np.array([1, 1, 0, 1, 2, 0])


def test_hand_computed_cmc_ap_inp() -> None:
    # q0 sorted: g2 .05 (junk, dropped) g1 .1 ✗ g5 .2 ✗ g3 .3 ✗ g0 .5 ✓ g4 .9 ✓
    #    matches at positions 3 and 4: AP = (1/4 + 2/5) / 2 = 0.325, INP = 2/5 = 0.4
    #    CMC = [0, 0, 0, 1, 1]
    # q1 sorted: g5 .0 (junk) g3 .1 ✗ g1 .2 ✓ g0 g2 g4: match at position 1
    #    AP = 1/2, INP = 1/2, CMC = [0, 1, 1, 1, 1]
    # mean CMC = [0, .5, .5, 1, 1]; mAP = (.325 + .5) / 2 = .4125; mINP = (.4 + .5) / 2 = .45
    result = rank_queries(HAND_DIST, HAND_Q_PIDS, HAND_G_PIDS, HAND_Q_CAMS, HAND_G_CAMS, max_rank=5)
    np.testing.assert_allclose(result.cmc, [0.0, 0.5, 0.5, 1.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(result.average_precision, [0.325, 0.5], atol=1e-12)
    np.testing.assert_allclose(result.inverse_negative_penalty, [0.4, 0.5], atol=1e-12)
    assert result.mAP == pytest.approx(0.4125, abs=1e-12)
    assert result.mINP == pytest.approx(0.45, abs=1e-12)
    np.testing.assert_array_equal(result.first_match, [3, 1])
    cmc, m_ap = evaluate_rank(
        HAND_DIST, HAND_Q_PIDS, HAND_G_PIDS, HAND_Q_CAMS, HAND_G_CAMS, max_rank=5
    )
    assert cmc.shape == (5,)
    np.testing.assert_allclose(cmc, [0.0, 0.5, 0.5, 1.0, 1.0], atol=1e-7)
    assert m_ap == pytest.approx(0.4125, abs=1e-12)
    metrics = result.as_dict(ranks=(1, 5))
    assert metrics == pytest.approx(
        {
            "mAP": 0.4125,
            "mINP": 0.45,
            "rank1": 0.0,
            "rank5": 1.0,
            "num_valid_queries": 2.0,
            "num_skipped_queries": 0.0,
        }
    )


def test_ties_keep_gallery_order() -> None:
    # Query pid 1 cam 0; gallery pids [2, 1, 1, 2], cams [1, 1, 2, 1].
    # All distances equal: the stable order is g0 ✗, g1 ✓, g2 ✓, g3 ✗.
    #   AP = (1/2 + 2/3) / 2 = 7/12, INP = 2/3, first match at position 1.
    # Distances [.3, .3, .1, .3]: g2 ✓ (pos 0), then g0 ✗, g1 ✓ (pos 2), g3 ✗.
    #   AP = (1/1 + 2/3) / 2 = 5/6, INP = 2/3.
    g_pids, g_cams = np.array([2, 1, 1, 2]), np.array([1, 1, 2, 1])
    for dist, ap, first in (([0.3, 0.3, 0.3, 0.3], 7 / 12, 1), ([0.3, 0.3, 0.1, 0.3], 5 / 6, 0)):
        for dtype in (np.float32, np.float64):
            result = rank_queries(
                np.array([dist], dtype=dtype), [1], g_pids, [0], g_cams, max_rank=4
            )
            assert result.mAP == pytest.approx(ap, abs=1e-12)
            assert result.mINP == pytest.approx(2 / 3, abs=1e-12)
            assert result.first_match[0] == first


def test_negative_zero_ties_with_zero() -> None:
    # -0.0 and 0.0 are equal distances: gallery order decides, g0 ✗ then g1 ✓ → AP = 1/2.
    result = rank_queries(
        np.array([[0.0, -0.0]], dtype=np.float32), [1], [2, 1], [0], [1, 1], max_rank=2
    )
    assert result.mAP == pytest.approx(0.5)


def test_skipped_queries_no_match_and_all_junk() -> None:
    # q0: pid 1 cam 0, valid match g1 (cam 1) at position 1 after g0 (pid 3): AP = 1/2.
    # q1: pid 7, absent from the gallery: skipped.
    # q2: pid 2 cam 0: its only pid-2 image g2 is on cam 0 (junk): skipped.
    dist = np.array([[0.1, 0.2, 0.3], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1]])
    result = rank_queries(dist, [1, 7, 2], [3, 1, 2], [0, 0, 0], [0, 1, 0], max_rank=3)
    assert result.num_skipped == 2
    np.testing.assert_array_equal(result.valid, [True, False, False])
    assert result.mAP == pytest.approx(0.5)
    np.testing.assert_allclose(result.cmc, [0.0, 1.0, 1.0])
    assert np.isnan(result.average_precision[1]) and np.isnan(result.average_precision[2])
    np.testing.assert_array_equal(result.first_match, [1, -1, -1])


def test_all_queries_skipped_is_an_error_for_evaluate_rank() -> None:
    with pytest.raises(ValueError, match="no query has a true match"):
        evaluate_rank(np.zeros((2, 2)), [5, 6], [1, 2], [0, 0], [1, 1], max_rank=2)
    result = rank_queries(np.zeros((2, 2)), [5, 6], [1, 2], [0, 0], [1, 1], max_rank=2)
    assert result.num_valid == 0 and np.isnan(result.mAP) and np.isnan(result.cmc).all()


def _random_case(
    rng: np.random.Generator,
    num_q: int,
    num_g: int,
    ids: int,
    cams: int,
    dtype: type,
    integer: bool,
):
    # Integer values from -2 to 3: many ties, and negative distances (e.g. -similarity).
    dist = (rng.integers(-2, 4, (num_q, num_g)) if integer else rng.random((num_q, num_g))).astype(
        dtype
    )
    return (
        dist,
        rng.integers(0, ids, num_q),
        rng.integers(0, ids, num_g),
        rng.integers(0, cams, num_q),
        rng.integers(0, cams, num_g),
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("integer", [True, False], ids=["ties", "continuous"])
def test_agrees_with_reference_loop(dtype: type, integer: bool) -> None:
    rng = np.random.default_rng(7 if integer else 8)
    checked = 0
    for _ in range(60):
        num_q, num_g = int(rng.integers(1, 25)), int(rng.integers(12, 60))
        case = _random_case(rng, num_q, num_g, int(rng.integers(2, 8)), 3, dtype, integer)
        try:
            ref_cmc, ref_map, ref_minp, ref_ap, skipped = eval_market1501_reference(*case, 10)
        except ValueError:
            continue
        result = rank_queries(*case, max_rank=10, rows_per_block=int(rng.integers(1, 9)))
        np.testing.assert_allclose(result.cmc, ref_cmc, atol=1e-6)
        assert result.mAP == pytest.approx(ref_map, abs=1e-6)
        assert result.mINP == pytest.approx(ref_minp, abs=1e-6)
        np.testing.assert_allclose(result.average_precision, ref_ap, atol=1e-6)
        assert result.num_skipped == skipped
        checked += 1
    assert checked > 40


def test_agrees_with_reference_on_realistic_clustered_features() -> None:
    rng = np.random.default_rng(3)
    ids, dim = 40, 32
    centres = rng.standard_normal((ids, dim))
    q_pids, g_pids = rng.integers(0, ids, 150), rng.integers(0, ids, 900)
    q_cams, g_cams = rng.integers(0, 6, 150), rng.integers(0, 6, 900)
    qf = centres[q_pids] + 1.2 * rng.standard_normal((150, dim))
    gf = centres[g_pids] + 1.2 * rng.standard_normal((900, dim))
    for dtype in (np.float32, np.float64):
        dist = cosine_distance(qf.astype(dtype), gf.astype(dtype))
        ref_cmc, ref_map, ref_minp, _, skipped = eval_market1501_reference(
            dist, q_pids, g_pids, q_cams, g_cams, 50
        )
        result = rank_queries(dist, q_pids, g_pids, q_cams, g_cams, 50, rows_per_block=64)
        assert 0.2 < ref_map < 0.95  # a realistic, neither trivial nor hopeless, ranking
        np.testing.assert_allclose(result.cmc, ref_cmc, atol=1e-6)
        assert result.mAP == pytest.approx(ref_map, abs=1e-6)
        assert result.mINP == pytest.approx(ref_minp, abs=1e-6)
        assert result.num_skipped == skipped


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    num_q=st.integers(1, 8),
    num_g=st.integers(1, 12),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_property_agrees_with_reference(data, num_q: int, num_g: int, dtype: type) -> None:
    values = st.sampled_from([-1.0, -0.0, 0.0, 0.5, 1.0, 2.0])
    dist = np.array(
        data.draw(st.lists(values, min_size=num_q * num_g, max_size=num_q * num_g)), dtype=dtype
    ).reshape(num_q, num_g)
    ids = st.lists(st.integers(0, 2), min_size=num_q, max_size=num_q)
    gids = st.lists(st.integers(0, 2), min_size=num_g, max_size=num_g)
    case = (
        dist,
        np.array(data.draw(ids)),
        np.array(data.draw(gids)),
        np.array(data.draw(ids)),
        np.array(data.draw(gids)),
    )
    try:
        ref_cmc, ref_map, ref_minp, ref_ap, skipped = eval_market1501_reference(*case, num_g)
    except ValueError:
        assert rank_queries(*case, max_rank=num_g).num_valid == 0
        return
    result = rank_queries(*case, max_rank=num_g, rows_per_block=3)
    assert result.mAP == pytest.approx(ref_map, abs=1e-12)
    np.testing.assert_allclose(result.cmc, ref_cmc, atol=1e-12)
    np.testing.assert_allclose(result.average_precision, ref_ap, atol=1e-12)
    assert result.mINP == pytest.approx(ref_minp, abs=1e-12)
    assert result.num_skipped == skipped


def test_block_size_does_not_change_results() -> None:
    case = _random_case(np.random.default_rng(11), 37, 80, 6, 3, np.float32, integer=True)
    results = [rank_queries(*case, max_rank=20, rows_per_block=b) for b in (1, 5, 37, 1000)]
    for other in results[1:]:
        np.testing.assert_array_equal(other.average_precision, results[0].average_precision)
        np.testing.assert_array_equal(other.first_match, results[0].first_match)
        np.testing.assert_array_equal(
            other.inverse_negative_penalty, results[0].inverse_negative_penalty
        )


def test_features_path_matches_distmat_path() -> None:
    rng = np.random.default_rng(5)
    qf, gf = (
        rng.standard_normal((30, 16)).astype(np.float32),
        rng.standard_normal((70, 16)).astype(np.float32),
    )
    labels = (
        rng.integers(0, 5, 30),
        rng.integers(0, 5, 70),
        rng.integers(0, 3, 30),
        rng.integers(0, 3, 70),
    )
    full = rank_queries(cosine_distance(qf, gf), *labels, max_rank=10)
    streamed = rank_queries_from_features(
        torch.from_numpy(qf), gf, *labels, max_rank=10, rows_per_block=7
    )
    np.testing.assert_allclose(streamed.average_precision, full.average_precision, atol=1e-12)
    np.testing.assert_array_equal(streamed.first_match, full.first_match)


def test_subset_restricts_queries() -> None:
    result = rank_queries(HAND_DIST, HAND_Q_PIDS, HAND_G_PIDS, HAND_Q_CAMS, HAND_G_CAMS, 5)
    head = result.subset([True, False])
    assert head.mAP == pytest.approx(0.325) and head.num_queries == 1
    with pytest.raises(ValueError, match="mask must have shape"):
        result.subset([True])


def test_max_rank_larger_than_gallery_warns_and_truncates() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cmc, _ = evaluate_rank(
            HAND_DIST, HAND_Q_PIDS, HAND_G_PIDS, HAND_Q_CAMS, HAND_G_CAMS, max_rank=50
        )
    assert cmc.shape == (6,)
    assert any("exceeds the gallery size 6" in str(w.message) for w in caught)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"q_pids": [1, 2, 3]}, "q_pids must have length 2, got 3"),
        ({"g_camids": [0, 1]}, "g_camids must have length 6, got 2"),
        ({"q_camids": [0.5, 1.0]}, "q_camids must hold integers"),
        ({"max_rank": 0}, "max_rank must be a positive integer, got 0"),
        ({"distmat": np.zeros(6)}, "distmat must be 2-D"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs: dict, message: str) -> None:
    args = {
        "distmat": HAND_DIST,
        "q_pids": HAND_Q_PIDS,
        "g_pids": HAND_G_PIDS,
        "q_camids": HAND_Q_CAMS,
        "g_camids": HAND_G_CAMS,
        "max_rank": 5,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        evaluate_rank(**args)


def test_nan_distance_is_refused_with_its_position() -> None:
    dist = HAND_DIST.copy()
    dist[1, 4] = np.nan
    with pytest.raises(ValueError, match=r"distmat must be finite, got nan at \[1, 4\]"):
        evaluate_rank(dist, HAND_Q_PIDS, HAND_G_PIDS, HAND_Q_CAMS, HAND_G_CAMS, 5)


def test_empty_query_or_gallery_is_refused() -> None:
    with pytest.raises(ValueError, match="query set is empty"):
        evaluate_rank(np.zeros((0, 3)), [], [1, 2, 3], [], [0, 0, 0])
    with pytest.raises(ValueError, match="gallery is empty"):
        evaluate_rank(
            np.zeros((2, 0)), [1, 2], np.array([], dtype=int), [0, 0], np.array([], dtype=int)
        )
    with pytest.raises(ValueError, match="query set is empty"):
        rank_queries_from_features(
            np.zeros((0, 4)),
            np.ones((3, 4)),
            np.array([], int),
            [1, 2, 3],
            np.array([], int),
            [0, 0, 0],
        )
