"""Angular diagnostics: how spread out each class is around its centre (spec §4, §9).

The paper's motivation (0.463 for head vs 0.288 for tail classes, 0.201 for tail classes
with LEAP) is the per-class variance of the angle between a training feature and its class
centre. These functions compute it from a batch of extracted training features, so a run can
log the same analysis: per class the mean and unbiased variance of

    β_k = arccos(clamp(<f̂_k, ĉ_i>)),   ĉ_i = normalise(mean of the class's f̂_k),

against ``K_i`` (images of class i), and head / tail averages. All classes at once with
``index_add`` and ``bincount``: face sets have up to 10^6 classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from leap_core.evaluation._validation import bool_vector, feature_matrix, int_vector

#: Cosines are clamped to ``[-1, 1]`` only: rounding can push them just outside, but no
#: gradient flows here, so the heads' wider margin (which would put a floor of ~5e-4 rad
#: under every angle) is not needed and would bias small variances.
COS_LIMIT = 1.0


@dataclass(frozen=True)
class AngularStats:
    """Per-class angle statistics in radians; NaN where a class has too few samples.

    ``mean`` needs one sample, ``variance`` (unbiased, ``ddof=1``, as in spec §4) two.
    """

    counts: np.ndarray
    mean: np.ndarray
    variance: np.ndarray

    def head_tail(self, head: Any) -> dict[str, float]:
        """Averages over head and tail classes of the per-class mean angle and variance.

        ``head`` is a boolean mask over classes. Classes without statistics are left out of
        the averages; an empty group gives NaN and a ``*_classes`` count of 0.
        """
        mask = bool_vector("head", head, self.counts.shape[0])
        out: dict[str, float] = {}
        for name, group in (("head", mask), ("tail", ~mask)):
            has = group & ~np.isnan(self.variance)
            out[f"{name}_angle_mean"] = float(self.mean[has].mean()) if has.any() else float("nan")
            out[f"{name}_angle_variance"] = (
                float(self.variance[has].mean()) if has.any() else float("nan")
            )
            out[f"{name}_classes"] = float(has.sum())
        return out

    def head_mask(self, threshold: int) -> np.ndarray:
        """Spec §5's vanilla split: class i is head when ``K_i > threshold``."""
        return self.counts > threshold


def class_angular_stats(features: Any, labels: Any, num_classes: int | None = None) -> AngularStats:
    """Per-class mean and unbiased variance of the feature-to-centre angle.

    ``labels`` are class indices in ``[0, num_classes)`` (default: ``max + 1``); classes with
    no sample get count 0 and NaN statistics. Computed in float64 so a class of 10^4
    near-identical angles keeps its small variance.
    """
    feats = F.normalize(feature_matrix("features", features).double(), dim=1)
    label = int_vector("labels", labels, feats.shape[0])
    if label.min() < 0:
        raise ValueError(f"labels must be non-negative, got {int(label.min())}")
    classes = int(label.max()) + 1 if num_classes is None else int(num_classes)
    if classes <= int(label.max()):
        raise ValueError(
            f"num_classes must exceed the largest label {int(label.max())}, got {num_classes}"
        )
    index = torch.from_numpy(label)
    counts = torch.bincount(index, minlength=classes)
    centres = torch.zeros((classes, feats.shape[1]), dtype=torch.float64)
    centres.index_add_(0, index, feats)
    centres = F.normalize(centres, dim=1)
    cos = (feats * centres[index]).sum(1).clamp(-COS_LIMIT, COS_LIMIT)
    angles = torch.acos(cos)
    n = counts.to(torch.float64)
    total = torch.zeros(classes, dtype=torch.float64).index_add_(0, index, angles)
    mean = total / n
    squares = torch.zeros(classes, dtype=torch.float64).index_add_(
        0, index, (angles - mean[index]) ** 2
    )
    variance = squares / (n - 1)
    mean = torch.where(n > 0, mean, torch.nan)
    variance = torch.where(n > 1, variance, torch.nan)
    return AngularStats(counts.numpy(), mean.numpy(), variance.numpy())
