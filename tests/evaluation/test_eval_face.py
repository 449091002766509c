"""Face metrics: k-fold accuracy, TPR@FPR, IJB templates, rank-1 with distractors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from leap_core.evaluation.face import (
    best_threshold,
    fpr_key,
    identification_rank1,
    kfold_accuracy,
    labelled_operating_points,
    pair_scores,
    read_template_media,
    read_template_pairs,
    roc_curve,
    template_features,
    tpr_at_fpr,
)


def test_best_threshold_picks_lowest_of_tied_optima() -> None:
    # scores .1 .3 .5 .7 with labels 0 1 0 1; accept when score > t.
    #   t below .1: 2 correct; t = .2: 3; t = .4: 2; t = .6: 3; t above .7: 2.
    # Best accuracy 3/4 at t = .2 and .6: the lowest, .2 = (.1 + .3) / 2, is returned.
    threshold, accuracy = best_threshold(
        np.array([0.1, 0.3, 0.5, 0.7]), np.array([False, True, False, True])
    )
    assert threshold == pytest.approx(0.2)
    assert accuracy == pytest.approx(0.75)


def test_kfold_accuracy_on_a_constructed_case() -> None:
    # Ten folds of one positive (.8) and one negative (.2) pair; fold 0's positive scores .1.
    # Training on the other nine folds: t = .5 (midpoint of .2 and .8) makes 1 error, the
    # alternatives t = .15 or below accept 9 negatives, so t = .5 for every fold.
    # Fold 0 tests at 1/2 (its positive .1 < .5), the others at 1.
    # mean = (.5 + 9) / 10 = .95; std = sqrt((.45² + 9 · .05²) / 10) = sqrt(.0225) = .15.
    scores = np.tile([0.8, 0.2], 10)
    scores[0] = 0.1
    same = np.tile([True, False], 10)
    folds = np.repeat(np.arange(10), 2)
    result = kfold_accuracy(scores, same, folds)
    np.testing.assert_allclose(result.thresholds, 0.5)
    np.testing.assert_allclose(result.accuracies, [0.5] + [1.0] * 9)
    assert result.mean == pytest.approx(0.95)
    assert result.std == pytest.approx(0.15)


def test_kfold_threshold_comes_from_the_other_folds() -> None:
    # Fold 0: positives at .6, negatives at .4; fold 1: positives .9, negatives .7.
    # Trained on fold 1 alone, t = .8 is best and is applied to fold 0: every positive
    # (.6) is rejected: accuracy 1/2. Trained on fold 0, t = .5, fold 1 accepts all: 1/2.
    scores = np.array([0.6, 0.4, 0.9, 0.7])
    result = kfold_accuracy(scores, [1, 0, 1, 0], [0, 0, 1, 1])
    np.testing.assert_allclose(result.thresholds, [0.8, 0.5])
    np.testing.assert_allclose(result.accuracies, [0.5, 0.5])


def test_tpr_at_fpr_on_a_constructed_score_set() -> None:
    # 1000 negatives scoring 0.000 … 0.999; 10 positives, three of them above .99.
    # FPR 1e-3: 1 negative may pass: t = .998 (second highest), positives > .998: .9985,
    #   .9995 → TPR 2/10; achieved FPR 1/1000 (only .999 passes).
    # FPR 1e-2: 10 may pass: t = .989; positives > .989: 3 → TPR .3.
    # FPR 1e-4 < 1/1000: not resolvable → reported at FPR 1e-3: TPR .2, flagged.
    negatives = np.arange(1000) / 1000
    positives = np.array([0.9955, 0.9985, 0.9995, 0.5, 0.4, 0.3, 0.2, 0.1, 0.6, 0.7])
    scores = np.concatenate([negatives, positives])
    same = np.concatenate([np.zeros(1000, bool), np.ones(10, bool)])
    with pytest.warns(UserWarning, match="below 1/1000 negative pairs"):
        p3, p2, p4 = tpr_at_fpr(scores, same, (1e-3, 1e-2, 1e-4))
    assert (p3.tpr, p3.threshold, p3.fpr_achieved, p3.resolvable) == pytest.approx(
        (0.2, 0.998, 0.001, True)
    )
    assert (p2.tpr, p2.threshold) == pytest.approx((0.3, 0.989))
    assert not p4.resolvable
    assert (p4.fpr_used, p4.tpr) == pytest.approx((1e-3, 0.2))
    labelled = labelled_operating_points([p3, p2, p4])
    assert labelled == pytest.approx(
        {"tpr@fpr=1e-3": 0.2, "tpr@fpr=1e-2": 0.3, "tpr@fpr_min": 0.2, "fpr_min": 1e-3}
    )
    assert "tpr@fpr=1e-4" not in labelled


def test_tpr_at_fpr_ties_at_the_threshold_are_rejected() -> None:
    # Negatives .5 .5 .4 .3, target FPR 1/4: one may pass, t = second highest = .5, but both
    # .5 negatives tie at t and are rejected: achieved FPR 0. Positives .5 and .6: only .6
    # passes → TPR 1/2.
    (point,) = tpr_at_fpr([0.5, 0.5, 0.4, 0.3, 0.5, 0.6], [0, 0, 0, 0, 1, 1], (0.25,))
    assert (point.threshold, point.fpr_achieved, point.tpr) == pytest.approx((0.5, 0.0, 0.5))


def test_fpr_key_format() -> None:
    assert fpr_key(1e-4) == "tpr@fpr=1e-4"
    assert fpr_key(5e-3) == "tpr@fpr=5e-3"


def test_roc_curve_points() -> None:
    # Scores .9(+) .8(-) .7(+) .6(-): thresholds .9 .8 .7 .6 →
    #   TPR 1/2 1/2 1 1; FPR 0 1/2 1/2 1.
    fpr, tpr, thresholds = roc_curve([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0])
    np.testing.assert_allclose(fpr, [0, 0.5, 0.5, 1])
    np.testing.assert_allclose(tpr, [0.5, 0.5, 1, 1])
    np.testing.assert_allclose(thresholds, [0.9, 0.8, 0.7, 0.6])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: tpr_at_fpr([0.1, np.nan], [0, 1]), "scores must be finite, got nan at index 1"),
        (lambda: tpr_at_fpr([0.1, 0.2], [1, 1]), "both positive and negative"),
        (lambda: tpr_at_fpr([0.1, 0.2], [0, 1], (0.0,)), r"fpr_targets must lie in \(0, 1\]"),
        (lambda: tpr_at_fpr([0.1, 0.2], [0, 1, 1]), "same must have length 2, got 3"),
        (lambda: kfold_accuracy([0.1, 0.2], [0, 1], [0, 0]), "at least 2 distinct fold ids"),
        (lambda: kfold_accuracy([], [], []), "scores is empty"),
    ],
)
def test_bad_face_inputs(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_template_features_average_media_first() -> None:
    # Template 1: media 10 holds (1,0) and (0,1) → mean (.5,.5); media 11 holds (1,0).
    #   Template = mean of media = (.75, .25) → direction (3, 1)/√10 (a plain image mean
    #   would give (2, 1)/√5). Template 2: one image (0, 2) → (0, 1).
    # Score(1, 2) = 1/√10.
    feats = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 2.0]])
    templates, tf = template_features(feats, [1, 1, 1, 2], [10, 10, 11, 20])
    np.testing.assert_array_equal(templates, [1, 2])
    np.testing.assert_allclose(tf.numpy(), [[3 / math.sqrt(10), 1 / math.sqrt(10)], [0, 1]])
    scores = pair_scores(templates, tf, [1, 2], [2, 2])
    np.testing.assert_allclose(scores, [1 / math.sqrt(10), 1.0])
    with pytest.raises(ValueError, match="template2 holds template 9 that has no features"):
        pair_scores(templates, tf, [1], [9])


def test_reads_insightface_ijb_meta_files(tmp_path: Path) -> None:
    media = tmp_path / "ijbc_face_tid_mid.txt"
    media.write_text("1.jpg 1 10\n2.jpg 1 10\n3.jpg 2 20\n")
    pairs = tmp_path / "ijbc_template_pair_label.txt"
    pairs.write_text("1 2 0\n1 1 1\n")
    names, tids, mids = read_template_media(media)
    np.testing.assert_array_equal(names, ["1.jpg", "2.jpg", "3.jpg"])
    np.testing.assert_array_equal(tids, [1, 1, 2])
    np.testing.assert_array_equal(mids, [10, 10, 20])
    t1, t2, same = read_template_pairs(pairs)
    np.testing.assert_array_equal(t1, [1, 1])
    np.testing.assert_array_equal(t2, [2, 1])
    np.testing.assert_array_equal(same, [False, True])
    bad = tmp_path / "bad_template_pair_label.txt"
    bad.write_text("1 2 3\n")
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        read_template_pairs(bad)


def _unit(degrees: float) -> list[float]:
    return [math.cos(math.radians(degrees)), math.sin(math.radians(degrees))]


def test_identification_rank1_with_distractors() -> None:
    # Probes at 0° (id 0) and 90° (id 1). Mates: id 0 at 10° and -3°, id 1 at 80°.
    # Distractors at 5° and 45°.
    #   (p0, 10°): distractor 5° is nearer → miss.  (p0, -3°): 3° < 5° → hit.
    #   (p1, 80°): 10° away, nearest distractor 45° away → hit.   rank-1 = 2/3.
    probes = np.array([_unit(0), _unit(90)])
    mates = np.array([_unit(10), _unit(80), _unit(-3)])
    distractors = np.array([_unit(5), _unit(45)] + [_unit(200 + a) for a in range(50)])
    for chunk in (1, 7, 1000):
        result = identification_rank1(
            probes, [0, 1], mates, [0, 1, 0], distractors, chunk_size=chunk
        )
        assert result.rank1 == pytest.approx(2 / 3)
        assert result.num_distractors == 52
        hits = dict(
            zip(
                zip(result.probe_index.tolist(), result.mate_index.tolist(), strict=True),
                result.hits.tolist(),
                strict=True,
            )
        )
        assert hits == {(0, 0): False, (0, 2): True, (1, 1): True}
    streamed = identification_rank1(
        probes,
        [0, 1],
        mates,
        [0, 1, 0],
        (torch.from_numpy(distractors[i : i + 3]) for i in range(0, 52, 3)),
    )
    np.testing.assert_array_equal(streamed.hits, result.hits)


def test_identification_excludes_the_probe_itself() -> None:
    # Images 0, 1 of id 0 and image 2 of id 1, used as both probes and mates: the only pairs
    # are (0, 1) and (1, 0); image 2 has no other image of its id. Distractor far away.
    feats = np.array([_unit(0), _unit(4), _unit(90)])
    result = identification_rank1(
        feats, [0, 0, 1], feats, [0, 0, 1], np.array([_unit(180)]), exclude_same_index=True
    )
    assert sorted(zip(result.probe_index.tolist(), result.mate_index.tolist(), strict=True)) == [
        (0, 1),
        (1, 0),
    ]
    assert result.rank1 == 1.0


def test_identification_bad_inputs() -> None:
    probes = np.array([_unit(0)])
    with pytest.raises(ValueError, match="distractors is empty"):
        identification_rank1(probes, [0], probes, [0], np.zeros((0, 2)))
    with pytest.raises(ValueError, match="no probe has a gallery mate"):
        identification_rank1(probes, [0], probes, [1], np.array([_unit(9)]))
    with pytest.raises(ValueError, match="distractors must have 2 columns, got 3"):
        identification_rank1(probes, [0], probes, [0], np.ones((4, 3)))
