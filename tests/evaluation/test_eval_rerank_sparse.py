"""Re-ranking from features (sparse, blocked) against the dense reference and the oracles."""

from __future__ import annotations

import numpy as np
import pytest

from leap_core.evaluation import rerank_sparse
from leap_core.evaluation.distance import cosine_distance
from leap_core.evaluation.reid import rank_distance_blocks, rank_queries
from leap_core.evaluation.rerank import re_ranking
from leap_core.evaluation.rerank_sparse import iter_re_ranking, re_ranking_from_features
from tests.evaluation.rerank_references import rerank_as_released, rerank_by_sets


def _clustered(seed: int, num_q: int, num_g: int, clusters: int = 12, dim: int = 16):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    feats = centres[rng.integers(0, clusters, num_q + num_g)]
    feats = (feats + 0.7 * rng.standard_normal(feats.shape)).astype(np.float32)
    return feats[:num_q], feats[num_q:]


def _duplicates(seed: int, num_q: int, num_g: int, groups: int):
    labels = np.random.default_rng(seed).integers(0, groups, num_q + num_g)
    feats = np.eye(groups + 2, dtype=np.float32)[labels]
    return feats[:num_q], feats[num_q:]


def _dense(q: np.ndarray, g: np.ndarray, k1: int, k2: int, lam: float) -> np.ndarray:
    return re_ranking(
        cosine_distance(q, g), cosine_distance(q, q), cosine_distance(g, g), k1, k2, lam
    )


@pytest.mark.parametrize(
    ("num_q", "num_g", "k1", "k2", "lam", "rows"),
    [
        (40, 260, 20, 6, 0.3, None),  # the paper's setting
        (30, 200, 6, 3, 0.3, 7),  # blocks that do not divide the rows
        (50, 150, 10, 1, 0.0, 13),  # no query expansion, Jaccard alone
        (20, 100, 4, 10, 0.7, None),  # k2 > k1 + 1
        (5, 8, 20, 6, 0.3, None),  # N < k1: every set is cut at N
        (1, 1, 3, 2, 0.3, None),
    ],
)
def test_equals_the_dense_reference(
    num_q: int, num_g: int, k1: int, k2: int, lam: float, rows: int | None
) -> None:
    q, g = _clustered(num_q + k1, num_q, num_g)
    ours = re_ranking_from_features(q, g, k1, k2, lam, rows)
    assert ours.shape == (num_q, num_g) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, _dense(q, g, k1, k2, lam), rtol=0, atol=1e-6)


@pytest.mark.parametrize(("k1", "k2", "lam"), [(6, 3, 0.3), (5, 1, 0.5)])
def test_equals_the_paper_and_the_released_procedure(k1: int, k2: int, lam: float) -> None:
    q, g = _clustered(k1, 12, 60)
    distances = cosine_distance(q, g), cosine_distance(q, q), cosine_distance(g, g)
    ours = re_ranking_from_features(q, g, k1, k2, lam)
    np.testing.assert_allclose(ours, rerank_by_sets(*distances, k1, k2, lam), atol=1e-6)
    np.testing.assert_allclose(ours, rerank_as_released(*distances, k1, k2, lam), atol=1e-6)


@pytest.mark.parametrize(("k1", "k2", "rows"), [(20, 6, None), (5, 2, 9), (3, 1, 4)])
def test_ties_are_broken_as_a_stable_sort_breaks_them(k1: int, k2: int, rows: int | None) -> None:
    # Every distance is 0 or 1: the neighbour lists are decided by ties alone, and with
    # k1 = 3 most images have more lower-index copies than k1 + 1 (no reciprocal set).
    q, g = _duplicates(k1, 30, 170, 6)
    distances = cosine_distance(q, g), cosine_distance(q, q), cosine_distance(g, g)
    ours = re_ranking_from_features(q, g, k1, k2, 0.3, rows)
    np.testing.assert_allclose(ours, re_ranking(*distances, k1, k2, 0.3), atol=1e-6)
    np.testing.assert_allclose(ours, rerank_as_released(*distances, k1, k2, 0.3), atol=1e-6)


def test_blocks_progress_and_small_expansion_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    q, g = _clustered(3, 23, 90)
    whole = re_ranking_from_features(q, g, 8, 4, 0.3)
    seen: list[tuple[int, int]] = []
    monkeypatch.setattr(rerank_sparse, "PAIRS_PER_CHUNK", 5)  # many chunks per block
    blocks = list(
        iter_re_ranking(q, g, 8, 4, 0.3, rows_per_block=10, progress=lambda *a: seen.append(a))
    )
    assert [start for start, _ in blocks] == [0, 10, 20]
    assert [block.shape for _, block in blocks] == [(10, 90), (10, 90), (3, 90)]
    # Other block shapes sum in another order: equal to float32 rounding.
    np.testing.assert_allclose(np.concatenate([b for _, b in blocks]), whole, atol=1e-6)
    # 113 neighbour rows in blocks of 10, then 23 output rows: done counts up to N + Q.
    assert seen[0] == (10, 136) and seen[-1] == (136, 136)
    assert [done for done, _ in seen] == sorted({done for done, _ in seen})


def test_double_precision_features_follow_the_dense_path() -> None:
    q, g = _clustered(5, 15, 70)
    q64, g64 = q.astype(np.float64), g.astype(np.float64)
    np.testing.assert_allclose(
        re_ranking_from_features(q64, g64, 7, 3, 0.3), _dense(q64, g64, 7, 3, 0.3), atol=1e-6
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k1": 0}, "k1 must be a positive integer, got 0"),
        ({"k2": 1.5}, "k2 must be a positive integer, got 1.5"),
        ({"lambda_value": 1.5}, r"lambda_value must be a number in \[0, 1\], got 1.5"),
        ({"rows_per_block": 0}, "rows_per_block must be a positive integer, got 0"),
        ({"gallery_features": np.ones((3, 5), np.float32)}, "same feature dimension, got 4 and 5"),
        ({"query_features": np.full((2, 4), np.nan, np.float32)}, "query_features must be finite"),
        (
            {"gallery_features": np.ones((0, 4), np.float32)},
            "gallery_features must hold at least one row",
        ),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    args = {
        "query_features": np.ones((2, 4), np.float32),
        "gallery_features": np.ones((3, 4), np.float32),
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        re_ranking_from_features(**args)


def test_ranking_blocks_as_they_come_equals_ranking_the_matrix() -> None:
    q, g = _clustered(8, 300, 400, clusters=40)
    rng = np.random.default_rng(8)
    labels = (rng.integers(0, 40, 300), rng.integers(0, 40, 400))
    cams = (rng.integers(0, 3, 300), rng.integers(0, 3, 400))
    blocks = list(iter_re_ranking(q, g, 10, 4, 0.3, rows_per_block=170))  # split to 128 rows
    whole = np.concatenate([b for _, b in blocks])
    streamed = rank_distance_blocks(iter(blocks), labels[0], labels[1], cams[0], cams[1])
    direct = rank_queries(whole, labels[0], labels[1], cams[0], cams[1])
    np.testing.assert_array_equal(streamed.average_precision, direct.average_precision)
    np.testing.assert_array_equal(streamed.first_match, direct.first_match)
    with pytest.raises(ValueError, match="expected rows from 170, got \\(130, 400\\) from 171"):
        rank_distance_blocks(
            iter([blocks[0], (171, blocks[1][1])]), labels[0], labels[1], cams[0], cams[1]
        )
    with pytest.raises(ValueError, match="distance blocks cover 170 of 300 queries"):
        rank_distance_blocks(iter(blocks[:1]), labels[0], labels[1], cams[0], cams[1])


def test_arguments_are_checked_at_the_call_not_at_the_first_block() -> None:
    with pytest.raises(ValueError, match="k1 must be a positive integer, got -1"):
        iter_re_ranking(np.ones((2, 4), np.float32), np.ones((3, 4), np.float32), k1=-1)
