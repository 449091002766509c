"""The long-tail methods that change how an embedding is trained, from the class sizes.

For open-set retrieval the classifier is thrown away after training, so only methods that
change the training loss can help the embedding. Each is a function of the training set's
class sizes ``K_i``, computed once over every class of the run (before a shard takes its
slice, so every rank holds the same values):

* class-balanced re-weighting (Cui et al. 2019): sample weight ``(1 − β)/(1 − β^K_y)``,
  optionally only from a late epoch (deferred re-weighting, Cao et al. 2019);
* the class-dependent margin of LDAM (Cao et al. 2019): ``m_i ∝ K_i^(-1/4)``, the largest
  margin on the smallest class;
* logit-adjusted training (Menon et al. 2021): ``τ·log π_i`` added to each class's logit,
  ``π_i = K_i / N`` (balanced softmax, Ren et al. 2020, at ``τ = 1``);
* label smoothing (``ε`` of the target mass spread over every class).

:class:`ClassBalance` turns them into each step's
:class:`~leap_core.heads.loss_terms.LossTerms`.
"""

from __future__ import annotations

import math

import torch

from leap_core import checks
from leap_core.distributed.shard import ClassShard
from leap_core.heads.loss_terms import LossTerms
from leap_core.leap.classes import class_counts_tensor


def class_balanced_weights(class_counts: object, beta: float) -> torch.Tensor:
    """``(C,)`` float64 weights ``(1 − β)/(1 − β^K_i)``, scaled to sum to ``C`` (Cui et al.'s
    normalisation). ``β = 0`` weighs every class alike; as ``β → 1`` the weights approach
    inverse class frequency."""
    counts = class_counts_tensor(class_counts).to(torch.float64)
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta!r}")
    # 1 − β^K, written so that β close to 1 keeps its precision.
    effective = -torch.expm1(counts * math.log(beta)) if beta > 0 else torch.ones_like(counts)
    weights = (1.0 - beta) / effective
    return weights * (counts.numel() / weights.sum())


def ldam_margins(class_counts: object, max_margin: float) -> torch.Tensor:
    """``(C,)`` float64 margins ``m_i = max_margin · (K_min / K_i)^(1/4)``: LDAM's
    ``C / K_i^(1/4)`` with ``C`` set so the smallest class gets ``max_margin``."""
    counts = class_counts_tensor(class_counts).to(torch.float64)
    if not math.isfinite(max_margin) or max_margin < 0:
        raise ValueError(f"max_margin must be a finite number >= 0, got {max_margin!r}")
    return max_margin * (counts.min() / counts).pow(0.25)


def log_prior(class_counts: object) -> torch.Tensor:
    """``(C,)`` float64 ``log π_i``, ``π_i = K_i / Σ_j K_j``: the training set's class prior."""
    counts = class_counts_tensor(class_counts).to(torch.float64)
    return counts.log() - counts.sum().log()


class ClassBalance:
    """The class-size-dependent terms of a run's loss, for one shard of the classes.

    Args:
        class_counts: ``K_i`` of every class of the run.
        shard: the classes this process holds (its slice of the logit bias).
        label_smoothing: ``ε`` in ``[0, 1)``.
        class_balanced_beta: ``β`` of class-balanced re-weighting, or ``None`` for none.
        reweight_start_epoch: the first epoch (0-based) weighted; 0 weighs from the start.
        logit_adjustment: ``τ >= 0``; 0 adds no bias.
    """

    def __init__(
        self,
        class_counts: object,
        shard: ClassShard,
        label_smoothing: float = 0.0,
        class_balanced_beta: float | None = None,
        reweight_start_epoch: int = 0,
        logit_adjustment: float = 0.0,
    ) -> None:
        counts = class_counts_tensor(class_counts)
        if counts.numel() != shard.num_classes:
            raise ValueError(
                f"class_counts has {counts.numel()} classes but the run has {shard.num_classes}"
            )
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
        if not math.isfinite(logit_adjustment) or logit_adjustment < 0:
            raise ValueError(f"logit_adjustment must be a number >= 0, got {logit_adjustment!r}")
        checks.non_negative_int("reweight_start_epoch", reweight_start_epoch)
        self.label_smoothing = float(label_smoothing)
        self.class_weights = (
            None
            if class_balanced_beta is None
            else class_balanced_weights(counts, class_balanced_beta)
        )
        self.reweight_start_epoch = reweight_start_epoch
        self.logit_bias = (
            None
            if logit_adjustment == 0
            else (logit_adjustment * log_prior(counts))[shard.start : shard.stop]
        )

    def terms(
        self, labels: torch.Tensor, epoch: int, weights: torch.Tensor | None = None
    ) -> LossTerms:
        """The terms of a step on the (gathered) batch ``labels`` at ``epoch``. ``weights``
        (summing to one) are the samples' weights before re-weighting, ``None`` for equal
        ones; re-weighted, they are scaled back to sum to one, as PyTorch's weighted
        cross-entropy divides by the batch's total weight."""
        if self.class_weights is not None and epoch >= self.reweight_start_epoch:
            self.class_weights = self.class_weights.to(labels.device)
            by_class = self.class_weights.index_select(0, labels)
            weighted = by_class if weights is None else weights.to(by_class.dtype) * by_class
            weights = weighted / weighted.sum()
        if self.logit_bias is not None:
            self.logit_bias = self.logit_bias.to(labels.device)
        return LossTerms(weights, self.logit_bias, self.label_smoothing)
