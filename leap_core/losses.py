"""The training criterion: a margin head, optionally with the LEAP feature cloud, over a
shard of the classes (all of them in a one-process run).

``loss = criterion(features, labels, epoch)`` is a whole step's loss. Statistics are
collected from the first step (so they are ready when the cloud starts, paper Fig. 5); the
cloud changes the logits only from ``cloud_start_epoch`` on. Without a cloud, or before it
starts, the loss is the head's cross-entropy, with the class-size-dependent terms of a
:class:`~leap_core.class_priors.ClassBalance` when the run has one (they compose with the
cloud).

In a class-sharded run every rank calls the criterion with its own batch; the batch is
gathered from every rank, each rank's head and cloud see their own classes, and every rank
gets the loss of the whole gathered batch, whose backward pass gives each rank the
gradients of its own embeddings and its own weight rows. With one process the gathering and
the reductions are the tensors themselves.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import nn

from leap_core import checks
from leap_core.class_priors import ClassBalance
from leap_core.distributed.shard import ClassShard
from leap_core.heads.angles import compute_dtype
from leap_core.heads.base import MarginHead
from leap_core.heads.class_sample import ClassSampler
from leap_core.heads.cloud_rows import CloudRows
from leap_core.heads.loss_terms import PLAIN, LossTerms
from leap_core.heads.workspace import Workspace
from leap_core.leap.cloud import FeatureCloud


class LEAPLoss(nn.Module):
    """Cross-entropy over a margin head's logits, with feature-cloud offsets for tail classes.

    With ``cloud_samples = k > 1`` each sample that has a cloud is fed to the head ``k``
    times with independent offsets, and its loss is the mean over those draws, so every
    sample of the batch keeps weight one **(choice)**: the extra draws lower the variance of
    the augmentation without tilting the batch toward the tail.

    Args:
        head: a :class:`~leap_core.heads.MarginHead` (NormFace, CosFace or ArcFace) with the
            shard's classes.
        cloud: the :class:`~leap_core.leap.FeatureCloud` of the same shard, or ``None`` for
            the plain baseline.
        cloud_start_epoch: first epoch (0-based) whose steps apply the cloud.
        shard: the classes this process holds (default: all of the head's).
        balance: label smoothing, class-balanced weights and logit adjustment, or ``None``
            for the plain cross-entropy.
        sampler: Partial FC's choice of the head rows each step's softmax covers
            (:mod:`~leap_core.heads.class_sample`), or ``None`` for every row.
    """

    def __init__(
        self,
        head: MarginHead,
        cloud: FeatureCloud | None = None,
        cloud_start_epoch: int = 0,
        shard: ClassShard | None = None,
        balance: ClassBalance | None = None,
        sampler: ClassSampler | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(head, MarginHead):
            raise ValueError(f"head must be a MarginHead, got {type(head).__name__}")
        shard = shard or ClassShard(head.num_classes)
        if head.num_classes != shard.size:
            raise ValueError(
                f"head has {head.num_classes} classes but rank {shard.rank} owns {shard.size}"
            )
        if cloud is not None:
            if not isinstance(cloud, FeatureCloud):
                raise ValueError(
                    f"cloud must be a FeatureCloud or None, got {type(cloud).__name__}"
                )
            if cloud.num_classes != shard.num_classes:
                raise ValueError(
                    f"cloud has {cloud.num_classes} classes but head has {shard.num_classes}"
                )
            if cloud.shard != shard:
                raise ValueError(f"cloud is sharded as {cloud.shard}, the head as {shard}")
            if cloud.embedding_dim != head.embedding_dim:
                raise ValueError(
                    f"cloud embedding_dim {cloud.embedding_dim} differs from "
                    f"head embedding_dim {head.embedding_dim}"
                )
        checks.non_negative_int("cloud_start_epoch", cloud_start_epoch)
        if balance is not None and not isinstance(balance, ClassBalance):
            raise ValueError(
                f"balance must be a ClassBalance or None, got {type(balance).__name__}"
            )
        if sampler is not None and (
            not isinstance(sampler, ClassSampler) or sampler.shard != shard
        ):
            raise ValueError(
                f"sampler must be a ClassSampler of the head's shard {shard}, got {sampler!r:.80}"
            )
        self.head = head
        self.cloud = cloud
        self.cloud_start_epoch = cloud_start_epoch
        self.shard = shard
        self.balance = balance
        self.sampler = sampler
        self._calls = 0
        self._last: dict[str, torch.Tensor | None] = {}
        self._workspace = Workspace()

    def forward(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        epoch: int,
        sample_ids: torch.Tensor | None = None,
        step: int | None = None,
    ) -> torch.Tensor:
        """The mean loss over the (gathered) batch, a scalar tensor with gradient.
        ``sample_ids`` (one per sample, e.g. its training-set index) reach the cloud's
        statistics, which count an image repeated in the batch once. ``step`` (the run's
        global step; default: the number of earlier calls) seeds the step's class sample,
        so a resumed run keeps the same rows as an uninterrupted one."""
        checks.non_negative_int("epoch", epoch)
        step = self._calls if step is None else checks.non_negative_int("step", step)
        self._calls += 1
        checks.features_tensor("features", features, self.head.embedding_dim)
        labels = checks.labels_tensor("labels", labels, features.shape[0], self.shard.num_classes)
        if sample_ids is not None:
            sample_ids = checks.labels_tensor(
                "sample_ids", sample_ids, features.shape[0], torch.iinfo(torch.int64).max
            )
        features = self.shard.gather_batch(features)
        labels = self.shard.gather_labels(labels)
        if self.cloud is not None:
            ids = None if sample_ids is None else self.shard.gather_labels(sample_ids)
            self.cloud.observe(features.detach(), labels, ids)
        sample = None if self.sampler is None else self.sampler.draw(labels, step)
        if self.cloud is None or epoch < self.cloud_start_epoch:
            terms = self._terms(labels, epoch)
            loss, correct = self.head.loss(
                features, labels, self._workspace, None, self.shard, terms, sample
            )
            self._remember(loss, correct, cloud_std=None)
            return loss

        variance = self.cloud.sample_variance(labels)
        per_sample = variance
        weights = None
        if self.cloud.cloud_samples > 1:
            index, repeats = self.cloud.repeat_index(variance)
            # Each sample keeps weight one: its rows share it.
            share = 1.0 / (repeats[index].to(torch.float64) * labels.numel())
            weights = share.to(compute_dtype(features, self.head.weight))
            features, labels, variance = features[index], labels[index], variance[index]
        draws: list[torch.Tensor] = []
        rows, offsets = self.cloud.draw_rows(
            variance,
            buffer=lambda shape: self._draws(shape, draws),
            logits=None if sample is None else sample.size,
        )
        cloud = CloudRows(rows, offsets, self.cloud.shifts_other_logits)
        terms = self._terms(labels, epoch, weights)
        loss, correct = self.head.loss(
            features, labels, self._workspace, cloud, self.shard, terms, sample
        )
        self._workspace.give_back(*draws)  # the loss used them as scratch and is done
        self._remember(loss, correct, cloud_std=per_sample.sqrt())
        return loss

    def _terms(
        self, labels: torch.Tensor, epoch: int, weights: torch.Tensor | None = None
    ) -> LossTerms:
        if self.balance is None:
            return PLAIN if weights is None else LossTerms(weights=weights)
        return self.balance.terms(labels, epoch, weights)

    def _draws(self, shape: tuple[int, ...], lent: list[torch.Tensor]) -> torch.Tensor:
        """A reused buffer for the step's cloud draws (see :class:`Workspace`)."""
        buffer = self._workspace.take("offsets", shape, torch.float32, self.head.weight.device)
        lent.append(buffer)
        return buffer

    def _remember(
        self, loss: torch.Tensor, correct: torch.Tensor, cloud_std: torch.Tensor | None
    ) -> None:
        """Keep what the step's figures are made of, as detached tensors; they are reduced
        and turned into floats only when :meth:`figures` is asked, so a step does not wait
        on the device for figures nobody reads."""
        self._last = {"loss": loss.detach(), "correct": correct, "cloud_std": cloud_std}

    def figures(self) -> dict[str, float]:
        """The last step's figures as floats (:func:`step_figures`); in a sharded run the
        same on every rank, and every rank must ask (the angular variances are summed over
        the shards)."""
        return step_figures(self._last, self.cloud)


class _CloudReports(Protocol):
    def angular_variance_by_group(self) -> tuple[float, float]: ...


def step_figures(
    last: dict[str, torch.Tensor | None], cloud: _CloudReports | None
) -> dict[str, float]:
    """Figures of a criterion's last step, as floats:

    * ``loss``; ``accuracy``: share of samples whose target logit (margin and cloud
      included) is the largest;
    * ``cloud_fraction``: share of the batch's samples that received a cloud;
    * ``cloud_std_mean``: mean standard deviation (radians) of their offsets;
    * ``head_angular_variance`` / ``tail_angular_variance``: mean intra-class angular
      variance (radians²) of head / tail classes in the angle memories.

    Cloud figures are 0 before the cloud starts; angular variances are NaN while a group
    has no statistics, and without a cloud.
    """
    if not last:
        raise RuntimeError("figures() needs a step first: call the criterion")
    loss, correct = last["loss"], last["correct"]
    assert loss is not None and correct is not None
    result = {
        "loss": float(loss),
        "accuracy": float(correct.float().mean()),
        "cloud_fraction": 0.0,
        "cloud_std_mean": 0.0,
    }
    cloud_std = last["cloud_std"]
    if cloud_std is not None:
        with_cloud = cloud_std > 0
        count = int(with_cloud.sum())
        result["cloud_fraction"] = count / cloud_std.numel()
        result["cloud_std_mean"] = float(cloud_std[with_cloud].sum()) / max(count, 1)
    if cloud is not None:
        head, tail = cloud.angular_variance_by_group()
        result["head_angular_variance"] = head
        result["tail_angular_variance"] = tail
    else:
        result["head_angular_variance"] = math.nan
        result["tail_angular_variance"] = math.nan
    return result
