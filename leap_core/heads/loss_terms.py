"""What a step's cross-entropy is made of beyond the logits: each sample's weight, a
per-class bias on the logits, and label smoothing.

The long-tail methods that change how an embedding is trained differ from plain
cross-entropy only in these three places (class-balanced re-weighting in the weights,
logit-adjusted training in the bias, label smoothing in the target distribution), and the
feature cloud's repeated draws (``cloud_samples``) in the weights. The loss's autograd node
(:mod:`leap_core.heads.fused_loss`) reads them from one :class:`LossTerms`, so each method is
written once for every world size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LossTerms:
    """The non-logit parts of one step's loss.

    Attributes:
        weights: ``(B,)`` each sample's weight in the loss, summing to one, or ``None`` for
            the batch mean.
        logit_bias: ``(C,)`` added to every sample's logit of each class (``C``: the head's
            classes, a shard's in a sharded run) after the scale, or ``None``.
        label_smoothing: ``ε``: the target distribution is ``1 − ε`` on the label and
            ``ε / C_all`` on every class (``C_all``: all classes, the label's included), as
            torchreid's and fast-reid's cross-entropy with label smoothing.
    """

    weights: torch.Tensor | None = None
    logit_bias: torch.Tensor | None = None
    label_smoothing: float = 0.0


#: The batch-mean cross-entropy.
PLAIN = LossTerms()
