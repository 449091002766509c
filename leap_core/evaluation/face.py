"""Face verification and identification metrics (LFW, IJB-C 1:1, MegaFace challenge 1).

* LFW 10-fold accuracy: for each fold, the similarity threshold that maximises accuracy on the
  other nine folds is applied to it; mean and (population) std of the ten accuracies.
* TPR at a target FPR from scored pairs (IJB-C 1:1), optionally on template features built by
  averaging image features per media, then media per template (the insightface IJB layout).
* Rank-1 identification against a distractor set (MegaFace): a probe succeeds for a gallery
  mate when the mate is more similar than every distractor; distractors are streamed in
  blocks, so memory does not grow with their number.

Scores are similarities (higher means "same person"), e.g. cosine similarity of embeddings;
all rates are fractions in ``[0, 1]``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from leap_core.evaluation._validation import (
    bool_vector,
    feature_matrix,
    float_vector,
    int_vector,
    positive_int,
)

# ---------------------------------------------------------------- LFW 10-fold verification


@dataclass(frozen=True)
class KFoldAccuracy:
    """Per-fold thresholds (chosen on the other folds) and test accuracies."""

    folds: np.ndarray
    thresholds: np.ndarray
    accuracies: np.ndarray

    @property
    def mean(self) -> float:
        return float(self.accuracies.mean())

    @property
    def std(self) -> float:
        """Population standard deviation over folds (``ddof=0``, as LFW tables report)."""
        return float(self.accuracies.std())


def best_threshold(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """``(threshold, accuracy)`` maximising accuracy of the rule ``score > threshold``.

    Candidates are exact: the midpoints between consecutive distinct scores, plus one below
    the minimum and one above the maximum (so "accept all" and "reject all" are possible).
    Ties in accuracy go to the lowest threshold, as ``np.argmax`` over an ascending grid.
    """
    order = np.argsort(scores, kind="stable")
    s, y = scores[order], same[order]
    distinct = np.flatnonzero(np.diff(s) > 0)  # last index of each run of equal scores
    # Threshold just above the first j sorted scores rejects them: j in {0} ∪ run ends ∪ {n}.
    cuts = np.concatenate([[0], distinct + 1, [s.shape[0]]])
    pos_rejected = np.concatenate([[0], np.cumsum(y)])[cuts]
    neg_rejected = cuts - pos_rejected
    correct = neg_rejected + (y.sum() - pos_rejected)
    best = int(np.argmax(correct))
    cut = cuts[best]
    if cut == 0:
        threshold = float(s[0]) - 1.0
    elif cut == s.shape[0]:
        threshold = float(s[-1]) + 1.0
    else:
        threshold = float((s[cut - 1] + s[cut]) / 2.0)
    return threshold, float(correct[best] / s.shape[0])


def kfold_accuracy(scores: Any, same: Any, folds: Any) -> KFoldAccuracy:
    """LFW-protocol accuracy: threshold from the other folds, applied to each fold.

    ``scores``: similarity per pair; ``same``: true for a same-identity pair; ``folds``: the
    integer fold id of each pair (LFW's ``pairs.txt`` has 10 folds of 600 pairs).
    """
    score = float_vector("scores", scores)
    if score.shape[0] == 0:
        raise ValueError("scores is empty; nothing to evaluate")
    label = bool_vector("same", same, score.shape[0])
    fold = int_vector("folds", folds, score.shape[0])
    ids = np.unique(fold)
    if ids.shape[0] < 2:
        raise ValueError(f"folds must hold at least 2 distinct fold ids, got {ids.tolist()}")
    thresholds = np.empty(ids.shape[0])
    accuracies = np.empty(ids.shape[0])
    for i, f in enumerate(ids):  # ten folds: a loop over folds, not over pairs
        test = fold == f
        thresholds[i] = best_threshold(score[~test], label[~test])[0]
        accuracies[i] = float(((score[test] > thresholds[i]) == label[test]).mean())
    return KFoldAccuracy(ids, thresholds, accuracies)


# ---------------------------------------------------------------- TPR at FPR


@dataclass(frozen=True)
class OperatingPoint:
    """TPR at a target FPR, with what was actually attainable.

    ``resolvable`` is false when ``fpr_target < 1 / num_negatives``: no threshold can show
    such a rate on this many negative pairs, so the point is reported at ``fpr_used =
    1 / num_negatives`` instead of pretending. ``fpr_achieved <= fpr_used`` is the false
    positive rate of ``threshold`` (accept ``score > threshold``).
    """

    fpr_target: float
    fpr_used: float
    fpr_achieved: float
    tpr: float
    threshold: float
    resolvable: bool


def fpr_key(fpr: float) -> str:
    """The metric name for a target FPR: ``tpr@fpr=1e-4`` for 1e-4, ``tpr@fpr=5e-3``."""
    mantissa, exponent = f"{fpr:.0e}".split("e")
    return f"tpr@fpr={mantissa}e{int(exponent)}"


def tpr_at_fpr(
    scores: Any, same: Any, fpr_targets: Sequence[float] = (1e-3, 1e-4, 1e-5)
) -> list[OperatingPoint]:
    """TPR of the rule ``score > t`` for the ``t`` with the highest TPR at FPR ≤ target.

    With ``n`` negatives, at most ``floor(target · n)`` may score above ``t``; ``t`` is the
    negative score of that rank (descending), so ties at ``t`` are all rejected. Targets
    below ``1 / n`` are unresolvable and reported at ``1 / n`` (see :class:`OperatingPoint`),
    with a warning.
    """
    score = float_vector("scores", scores)
    label = bool_vector("same", same, score.shape[0])
    negatives = np.sort(score[~label])[::-1]
    positives = np.sort(score[label])
    if negatives.shape[0] == 0 or positives.shape[0] == 0:
        raise ValueError(
            f"same must hold both positive and negative pairs, got "
            f"{positives.shape[0]} positive and {negatives.shape[0]} negative"
        )
    n_neg = negatives.shape[0]
    points = []
    for target in fpr_targets:
        if (
            isinstance(target, bool)
            or not isinstance(target, int | float)
            or not (0.0 < float(target) <= 1.0)
        ):
            raise ValueError(f"fpr_targets must lie in (0, 1], got {target!r}")
        resolvable = float(target) >= 1.0 / n_neg
        used = float(target) if resolvable else 1.0 / n_neg
        if not resolvable:
            warnings.warn(
                f"FPR {target:.0e} is below 1/{n_neg} negative pairs; reporting TPR "
                f"at the smallest resolvable FPR {used:.2e}",
                stacklevel=2,
            )
        allowed = math.floor(used * n_neg + 1e-9)
        threshold = float(negatives[allowed]) if allowed < n_neg else float(negatives[-1]) - 1
        accepted_neg = n_neg - np.searchsorted(negatives[::-1], threshold, side="right")
        accepted_pos = positives.shape[0] - np.searchsorted(positives, threshold, side="right")
        points.append(
            OperatingPoint(
                float(target),
                used,
                accepted_neg / n_neg,
                accepted_pos / positives.shape[0],
                threshold,
                resolvable,
            )
        )
    return points


def roc_curve(scores: Any, same: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` for ``score >= t`` at every distinct score, descending."""
    score = float_vector("scores", scores)
    label = bool_vector("same", same, score.shape[0])
    if label.all() or not label.any():
        raise ValueError("same must hold both positive and negative pairs")
    order = np.argsort(-score, kind="stable")
    s, y = score[order], label[order]
    ends = np.concatenate([np.flatnonzero(np.diff(s) != 0), [s.shape[0] - 1]])
    tp = np.cumsum(y)[ends]
    fp = (ends + 1) - tp
    return fp / (~label).sum(), tp / label.sum(), s[ends]


# ---------------------------------------------------------------- IJB templates


def read_template_media(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(image_names, template_ids, media_ids)`` from an IJB ``*_face_tid_mid.txt`` file.

    Each line is ``image_name template_id media_id`` separated by whitespace.
    """
    table = np.loadtxt(path, dtype=str, ndmin=2)
    if table.shape[1] != 3:
        raise ValueError(f"{path}: expected 3 columns (image template media), got {table.shape[1]}")
    return table[:, 0], table[:, 1].astype(np.int64), table[:, 2].astype(np.int64)


def read_template_pairs(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(template1, template2, same)`` from an IJB ``*_template_pair_label.txt`` file."""
    table = np.loadtxt(path, dtype=np.int64, ndmin=2)
    if table.shape[1] != 3:
        raise ValueError(
            f"{path}: expected 3 columns (template1 template2 label), got {table.shape[1]}"
        )
    if not np.isin(table[:, 2], (0, 1)).all():
        raise ValueError(f"{path}: labels must be 0 or 1")
    return table[:, 0], table[:, 1], table[:, 2].astype(bool)


def template_features(
    features: Any, template_ids: Any, media_ids: Any
) -> tuple[np.ndarray, torch.Tensor]:
    """``(templates, features)``: one L2-normalised feature per template.

    Image features are L2-normalised, averaged within each (template, media) pair, and the
    media means averaged within the template, so a video with 100 frames weighs as much as
    one photo (the IJB convention). Vectorised with ``index_add``.
    """
    feats = F.normalize(feature_matrix("features", features), dim=1)
    tids = int_vector("template_ids", template_ids, feats.shape[0])
    mids = int_vector("media_ids", media_ids, feats.shape[0])
    pairs, media_inverse = np.unique(np.stack([tids, mids], 1), axis=0, return_inverse=True)
    media_of_image = torch.from_numpy(media_inverse.reshape(-1))
    media_sum = torch.zeros((pairs.shape[0], feats.shape[1]), dtype=feats.dtype)
    media_sum.index_add_(0, media_of_image, feats)
    media_count = torch.bincount(media_of_image, minlength=pairs.shape[0]).to(feats.dtype)
    media_mean = media_sum / media_count[:, None]
    templates, template_inverse = np.unique(pairs[:, 0], return_inverse=True)
    template_of_media = torch.from_numpy(template_inverse.reshape(-1))
    template_sum = torch.zeros((templates.shape[0], feats.shape[1]), dtype=feats.dtype)
    template_sum.index_add_(0, template_of_media, media_mean)
    return templates, F.normalize(template_sum, dim=1)


def pair_scores(
    templates: np.ndarray,
    features: torch.Tensor,
    template1: Any,
    template2: Any,
    chunk_size: int = 1_000_000,
) -> np.ndarray:
    """Cosine similarity of each template pair; unknown template ids raise ``ValueError``."""
    t1 = int_vector("template1", template1)
    t2 = int_vector("template2", template2, t1.shape[0])
    rows = []
    for name, ids in (("template1", t1), ("template2", t2)):
        where = np.searchsorted(templates, ids).clip(max=templates.shape[0] - 1)
        missing = templates[where] != ids
        if missing.any():
            raise ValueError(f"{name} holds template {ids[missing][0]} that has no features")
        rows.append(torch.from_numpy(where))
    out = np.empty(t1.shape[0])
    for s in range(0, t1.shape[0], positive_int("chunk_size", chunk_size)):
        a = features[rows[0][s : s + chunk_size]]
        b = features[rows[1][s : s + chunk_size]]
        out[s : s + chunk_size] = (a * b).sum(1).double().numpy()
    return out


# ---------------------------------------------------------------- identification


@dataclass(frozen=True)
class IdentificationResult:
    """Rank-1 outcome of every (probe, gallery mate) pair against the distractors."""

    probe_index: np.ndarray
    mate_index: np.ndarray
    hits: np.ndarray
    num_distractors: int

    @property
    def rank1(self) -> float:
        return float(self.hits.mean()) if self.hits.size else float("nan")


def _distractor_blocks(distractors: Any, chunk_size: int) -> Iterable[torch.Tensor]:
    if isinstance(distractors, np.ndarray | torch.Tensor):
        for start in range(0, distractors.shape[0], chunk_size):
            yield feature_matrix("distractors", distractors[start : start + chunk_size])
    else:
        for block in distractors:
            yield feature_matrix("distractors", block)


def identification_rank1(
    probes: Any,
    probe_ids: Any,
    mates: Any,
    mate_ids: Any,
    distractors: Any,
    *,
    exclude_same_index: bool = False,
    chunk_size: int = 65_536,
) -> IdentificationResult:
    """MegaFace challenge-1 rank-1: per (probe, mate of the same id), is the mate closer
    than every distractor?

    For each pair the gallery is that mate plus all distractors; the pair is a hit when
    ``cos(probe, mate) > max cos(probe, distractor)`` (a tie counts as a miss). Distractors
    are an array (possibly ``np.memmap``) read ``chunk_size`` rows at a time, or an iterable
    of ``(n, D)`` blocks, so memory is ``O(probes × chunk_size)`` whatever their number.
    ``exclude_same_index`` drops pairs where probe and mate are the same row (when the
    probe set is also the mate set, as in FaceScrub).
    """
    p = F.normalize(feature_matrix("probes", probes), dim=1)
    m = F.normalize(feature_matrix("mates", mates, p.shape[1]), dim=1)
    pid = int_vector("probe_ids", probe_ids, p.shape[0])
    mid = int_vector("mate_ids", mate_ids, m.shape[0])
    chunk_size = positive_int("chunk_size", chunk_size)
    best = torch.full((p.shape[0],), -torch.inf, dtype=torch.float64)
    count = 0
    for block in _distractor_blocks(distractors, chunk_size):
        if block.shape[1] != p.shape[1]:
            raise ValueError(f"distractors must have {p.shape[1]} columns, got {block.shape[1]}")
        sims = p.to(block.dtype) @ F.normalize(block, dim=1).t()
        best = torch.maximum(best, sims.amax(1).double())
        count += block.shape[0]
    if count == 0:
        raise ValueError("distractors is empty; rank-1 against no distractor is meaningless")
    same = torch.from_numpy(pid[:, None] == mid[None, :])
    if exclude_same_index:
        if p.shape[0] != m.shape[0]:
            raise ValueError(
                "exclude_same_index needs probes and mates of equal length, got "
                f"{p.shape[0]} and {m.shape[0]}"
            )
        same.fill_diagonal_(False)
    probe_index, mate_index = torch.nonzero(same, as_tuple=True)
    if probe_index.numel() == 0:
        raise ValueError("no probe has a gallery mate with the same id; check the ids")
    mate_sims = (p[probe_index].double() * m[mate_index].double()).sum(1)
    hits = mate_sims > best[probe_index]
    return IdentificationResult(probe_index.numpy(), mate_index.numpy(), hits.numpy(), count)


def labelled_operating_points(points: Iterable[OperatingPoint]) -> dict[str, float]:
    """Flat metrics for TPR@FPR points: ``tpr@fpr=1e-4`` for each resolvable target; the
    unresolvable ones (too few negatives) become ``tpr@fpr_min`` with ``fpr_min`` beside it,
    never a number under the name of a rate that was not measured."""
    out: dict[str, float] = {}
    for point in points:
        if point.resolvable:
            out[fpr_key(point.fpr_target)] = point.tpr
        else:
            out["tpr@fpr_min"] = point.tpr
            out["fpr_min"] = point.fpr_used
    return out


__all__ = [
    "IdentificationResult",
    "KFoldAccuracy",
    "OperatingPoint",
    "best_threshold",
    "fpr_key",
    "identification_rank1",
    "kfold_accuracy",
    "labelled_operating_points",
    "pair_scores",
    "read_template_media",
    "read_template_pairs",
    "roc_curve",
    "template_features",
    "tpr_at_fpr",
]
