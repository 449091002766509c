"""Evaluators: the protocol, batch accumulation and the flat metric dicts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from leap_core.evaluation.distance import cosine_distance
from leap_core.evaluation.evaluators import (
    Evaluator,
    FaceVerificationEvaluator,
    ReidEvaluator,
)
from leap_core.evaluation.face import kfold_accuracy
from leap_core.evaluation.reid import rank_queries


def _reid_data(seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((8, 12))
    q_pids, g_pids = rng.integers(0, 8, 40), rng.integers(0, 8, 120)
    qf = centres[q_pids] + 0.8 * rng.standard_normal((40, 12))
    gf = centres[g_pids] + 0.8 * rng.standard_normal((120, 12))
    return (
        qf.astype(np.float32),
        q_pids,
        rng.integers(0, 3, 40),
        gf.astype(np.float32),
        g_pids,
        rng.integers(0, 3, 120),
    )


def evaluate_through_the_protocol(
    evaluator: Evaluator, batches: list[tuple], passes: int = 2
) -> list[dict[str, float]]:
    """What a trainer does with any evaluator: reset, process its batches, evaluate; twice,
    so a second pass must not see the first's batches."""
    results = []
    for _ in range(passes):
        evaluator.reset()
        for batch in batches:
            evaluator.process(*batch)
        results.append(evaluator.evaluate())
    return results


def test_both_evaluators_give_their_metrics_through_the_protocol_alone() -> None:
    qf, q_pids, q_cams, gf, g_pids, g_cams = _reid_data(2)
    reid = evaluate_through_the_protocol(
        ReidEvaluator(max_rank=5),
        [(qf, q_pids, q_cams, "query"), (gf, g_pids, g_cams, "gallery")],
    )
    direct = rank_queries(cosine_distance(qf, gf), q_pids, g_pids, q_cams, g_cams, 5)
    assert reid[0] == reid[1]  # reset forgot the first pass
    assert reid[0]["mAP"] == pytest.approx(direct.mAP, abs=1e-9)
    assert reid[0]["rank1"] == pytest.approx(direct.cmc[0])
    # Four pairs in two folds, each a same pair (scores 1, cos 0.1) and a different one
    # (cos 1.2, cos 1.3). The midpoint threshold of either fold (0.68, 0.63) separates the
    # other fold's pairs too.
    angles = [0.0, 1.2, 0.1, 1.3]
    feats = np.zeros((8, 2), np.float32)
    feats[0::2, 0] = 1.0
    feats[1::2] = np.stack([np.cos(angles), np.sin(angles)], 1)
    face = evaluate_through_the_protocol(
        FaceVerificationEvaluator.interleaved(
            [True, False, True, False], [0, 0, 1, 1], fpr_targets=()
        ),
        [(feats[:3],), (feats[3:],)],
    )
    assert face[0] == face[1]
    assert face[0]["num_pairs"] == 4.0
    assert (face[0]["lfw_accuracy"], face[0]["lfw_accuracy_std"]) == (1.0, 0.0)


def test_reid_evaluator_matches_direct_ranking_and_splits_head_tail() -> None:
    qf, q_pids, q_cams, gf, g_pids, g_cams = _reid_data()
    evaluator = ReidEvaluator(max_rank=10, head_pids=[0, 1, 2])
    for start in range(0, 40, 16):  # batches, as the trainer feeds them
        evaluator.process(
            torch.from_numpy(qf[start : start + 16]),
            q_pids[start : start + 16],
            q_cams[start : start + 16],
            split="query",
        )
    evaluator.process(gf, g_pids, g_cams, split="gallery")
    metrics = evaluator.evaluate()
    direct = rank_queries(cosine_distance(qf, gf), q_pids, g_pids, q_cams, g_cams, 10)
    assert metrics["mAP"] == pytest.approx(direct.mAP, abs=1e-9)
    assert metrics["mINP"] == pytest.approx(direct.mINP, abs=1e-9)
    for k in (1, 5, 10):
        assert metrics[f"rank{k}"] == pytest.approx(direct.cmc[k - 1])
        assert 0.0 <= metrics[f"rank{k}"] <= 1.0
    head = np.isin(q_pids, [0, 1, 2])
    assert metrics["head/mAP"] == pytest.approx(direct.subset(head).mAP, abs=1e-9)
    assert metrics["tail/mAP"] == pytest.approx(direct.subset(~head).mAP, abs=1e-9)
    assert all(isinstance(v, float) for v in metrics.values())
    evaluator.reset()
    with pytest.raises(ValueError, match="no query features were processed"):
        evaluator.evaluate()


def test_reid_evaluator_with_re_ranking_runs_the_re_ranked_matrix() -> None:
    qf, q_pids, q_cams, gf, g_pids, g_cams = _reid_data(1)
    evaluator = ReidEvaluator(max_rank=10, rerank=True, k1=6, k2=3)
    evaluator.process(qf, q_pids, q_cams, "query")
    evaluator.process(gf, g_pids, g_cams, "gallery")
    metrics = evaluator.evaluate()
    assert 0.0 < metrics["mAP"] <= 1.0
    assert evaluator.last_result is not None
    assert metrics["mAP"] == pytest.approx(evaluator.last_result.mAP)


def test_reid_evaluator_bad_input() -> None:
    evaluator = ReidEvaluator()
    with pytest.raises(ValueError, match="split must be 'query' or 'gallery', got 'test'"):
        evaluator.process(np.ones((2, 3), np.float32), [1, 2], [0, 0], split="test")
    with pytest.raises(ValueError, match="pids must have length 2, got 3"):
        evaluator.process(np.ones((2, 3), np.float32), [1, 2, 3], [0, 0])
    with pytest.raises(ValueError, match="features must be finite"):
        evaluator.process(np.full((2, 3), np.nan, np.float32), [1, 2], [0, 0])


def test_face_verification_evaluator() -> None:
    # 20 interleaved pairs in 10 folds; pair i's images are at angle 0 and at angle a_i,
    # so its score is cos(a_i). Same pairs: 10°; different pairs: 80°, except fold 3's
    # different pair at 5° (a false accept whatever the threshold between cos 80° and cos 10°).
    angles = np.tile([10.0, 80.0], 10)
    angles[7] = 5.0
    same = np.tile([True, False], 10)
    folds = np.repeat(np.arange(10), 2)
    feats = np.zeros((40, 2), np.float32)
    feats[0::2, 0] = 1.0
    feats[1::2] = np.stack([np.cos(np.radians(angles)), np.sin(np.radians(angles))], 1)
    evaluator = FaceVerificationEvaluator.interleaved(same, folds, fpr_targets=(0.1, 1e-3))
    evaluator.process(feats[:25])
    evaluator.process(feats[25:])
    with pytest.warns(UserWarning, match="below 1/10 negative pairs"):
        metrics = evaluator.evaluate()
    expected = kfold_accuracy(np.cos(np.radians(angles)), same, folds)
    # Fold 3 tests at 1/2, every other fold at 1: mean .95, std .15.
    assert metrics["lfw_accuracy"] == pytest.approx(0.95)
    assert metrics["lfw_accuracy_std"] == pytest.approx(0.15)
    assert metrics["lfw_accuracy"] == pytest.approx(expected.mean)
    # FPR 0.1 of 10 negatives: one may pass (the 5° pair, score cos 5°); the threshold is
    # the next negative, cos 80°, so every positive (cos 10°) is accepted: TPR 1.
    assert metrics["tpr@fpr=1e-1"] == pytest.approx(1.0)
    # FPR 1e-3 is below 1/10: labelled as the minimum resolvable FPR, 0.1.
    assert "tpr@fpr=1e-3" not in metrics
    assert metrics["fpr_min"] == pytest.approx(0.1) and metrics["tpr@fpr_min"] == 1.0
    assert metrics["num_pairs"] == 20.0
    assert not math.isnan(metrics["lfw_accuracy"])


def test_face_evaluator_needs_every_pair_image() -> None:
    evaluator = FaceVerificationEvaluator.interleaved([True, False])
    evaluator.process(np.ones((3, 4), np.float32))
    with pytest.raises(ValueError, match="pairs refer to image 3 but only 3 images"):
        evaluator.evaluate()
    with pytest.raises(ValueError, match=r"pairs must have shape \(num_pairs, 2\)"):
        FaceVerificationEvaluator(np.zeros((2, 3), int), [True, False])
