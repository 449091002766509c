"""Softmax cross-entropy over classes split across ranks, with margins and the cloud.

Rank ``r`` holds the head's weight rows of its classes and computes, for the gathered batch,
only those classes' logits. The cross-entropy of sample ``b`` over all ``C`` classes is
``log Σ_j exp(z_bj − m_b) + m_b − z_b,y``; its three global pieces are all-reduced: the row
maximum ``m_b`` (max), the sum of exponentials (sum) and the target logit ``z_b,y`` (sum; only
the target's owner contributes it). The gradient with respect to this rank's cosines,
``(softmax − onehot)·w·s`` times the cloud's and the margin's derivatives, is formed in the
forward pass as in :mod:`leap_core.heads.fused_loss`, so the backward pass holds no
collective except the gathered batch's.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from leap_core.distributed.collectives import (
    all_reduce_max,
    all_reduce_sum,
    gather_batch,
    gather_labels,
)
from leap_core.distributed.shard import ClassShard
from leap_core.distributed.sharded_cloud import ShardedFeatureCloud
from leap_core.heads.base import MarginHead, compute_dtype
from leap_core.heads.fused_loss import TargetFn, held_gradient, target_with_slope
from leap_core.heads.row_shift import apply_row_slope, shift_rows_into
from leap_core.heads.workspace import Workspace
from leap_core.losses import step_figures


class _ShardedMarginSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        cos: torch.Tensor,
        labels: torch.Tensor,
        start: int,
        weights: torch.Tensor | None,
        target_fn: TargetFn,
        scale: float,
        rows: torch.Tensor | None,
        row_offsets: torch.Tensor | None,
        shift_others: bool,
        workspace: Workspace,
        group: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(cos.device.type, enabled=False):
            batch, classes = cos.shape
            local = labels - start
            owned = ((local >= 0) & (local < classes)).nonzero().squeeze(1)
            column = local.index_select(0, owned)
            logits = workspace.take("logits", (batch, classes), cos.dtype, cos.device)
            torch.mul(cos, scale, out=logits)

            alpha_y = torch.zeros(owned.numel(), 1, dtype=cos.dtype, device=cos.device)
            slope = None
            drawn_buffer = row_offsets
            if rows is not None and row_offsets is not None and rows.numel() > 0:
                row_offsets = row_offsets.to(cos.dtype)
                # Each owned sample's target offset: its row's draw for its own column.
                row_of = torch.full((batch,), -1, dtype=torch.long, device=cos.device)
                row_of[rows] = torch.arange(rows.numel(), device=cos.device)
                has = row_of.index_select(0, owned) >= 0
                picks = row_of.index_select(0, owned).clamp(min=0)
                drawn = (
                    row_offsets.index_select(0, picks)
                    if row_offsets.shape[1] == 1
                    else row_offsets.index_select(0, picks).gather(1, column.unsqueeze(1))
                )
                alpha_y = torch.where(has.unsqueeze(1), drawn, torch.zeros_like(drawn))
                if shift_others:
                    slope = shift_rows_into(logits, cos, rows, row_offsets, scale, workspace)

            cos_y = cos[owned, column].unsqueeze(1)
            target, target_slope = target_with_slope(target_fn, cos_y, alpha_y)
            target_logit = target.squeeze(1) * scale
            logits[owned, column] = target_logit

            top = all_reduce_max(logits.amax(dim=1), group)
            grad = workspace.take("grad", (batch, classes), cos.dtype, cos.device)
            torch.sub(logits, top.unsqueeze(1), out=grad).exp_()
            workspace.give_back(logits)
            total = all_reduce_sum(grad.sum(dim=1), group)
            picked_target = torch.zeros(batch, dtype=cos.dtype, device=cos.device)
            picked_target[owned] = target_logit
            z_y = all_reduce_sum(picked_target, group)
            per_sample = total.log() + top - z_y
            correct = z_y >= top
            if weights is None:
                loss = per_sample.mean()
                row_weight: torch.Tensor | float = scale / batch
            else:
                loss = (per_sample * weights).sum()
                row_weight = (weights * scale).unsqueeze(1)

            grad.div_(total.unsqueeze(1))
            grad[owned, column] -= 1.0
            grad.mul_(row_weight)
            grad_y = grad[owned, column] * target_slope.squeeze(1)
            if slope is not None:
                assert rows is not None
                apply_row_slope(grad, rows, slope, workspace)
            grad[owned, column] = grad_y

        if drawn_buffer is not None:
            workspace.give_back(drawn_buffer)
        ctx.grad = grad
        ctx.workspace = workspace
        ctx.mark_non_differentiable(correct)
        return loss, correct

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor, _grad_correct: Any) -> tuple[Any, ...]:
        return (held_gradient(ctx, grad_loss), *([None] * 10))


def sharded_margin_softmax_cross_entropy(
    head: MarginHead,
    features: torch.Tensor,
    labels: torch.Tensor,
    shard: ClassShard,
    workspace: Workspace,
    group: Any = None,
    rows: torch.Tensor | None = None,
    row_offsets: torch.Tensor | None = None,
    shift_others: bool = True,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The cross-entropy over all classes of the **gathered** batch ``features`` /
    ``labels`` (global class indices), computed from this rank's ``head`` (its classes'
    rows); every rank gets the same loss. ``row_offsets`` holds this rank's columns
    (``(n, C_local)``) or one offset per sample (``(n, 1)``, the same on every rank)."""
    return _ShardedMarginSoftmax.apply(
        head.cosine(features),
        labels,
        shard.start,
        weights,
        head.target_cosine,
        head.scale,
        rows,
        row_offsets,
        shift_others,
        workspace,
        group,
    )


class ShardedLEAPLoss(nn.Module):
    """:class:`~leap_core.losses.LEAPLoss` with the classes split across ranks.

    Called on each rank with that rank's batch; returns the loss of the whole gathered batch
    (the same value on every rank), whose backward pass gives each rank the gradients of its
    own embeddings and its own weight rows.

    Args:
        head: this rank's head, ``num_classes = shard.size`` (its classes' weight rows).
        shard: the classes this rank owns.
        cloud: the :class:`ShardedFeatureCloud` of the same shard, or ``None``.
        cloud_start_epoch: first epoch (0-based) whose steps apply the cloud.
        group: the process group (``None``: the default group).
    """

    def __init__(
        self,
        head: MarginHead,
        shard: ClassShard,
        cloud: ShardedFeatureCloud | None = None,
        cloud_start_epoch: int = 0,
        group: Any = None,
    ) -> None:
        super().__init__()
        if head.num_classes != shard.size:
            raise ValueError(
                f"head has {head.num_classes} classes but rank {shard.rank} owns {shard.size}"
            )
        if cloud is not None and cloud.shard != shard:
            raise ValueError(f"cloud is sharded as {cloud.shard}, the head as {shard}")
        if not dist.is_initialized():
            raise RuntimeError("ShardedLEAPLoss needs torch.distributed initialised first")
        self.head = head
        self.shard = shard
        self.cloud = cloud
        self.cloud_start_epoch = cloud_start_epoch
        self.group = group
        self._workspace = Workspace()
        self._last: dict[str, torch.Tensor | None] = {}

    def forward(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        epoch: int,
        sample_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        gathered = gather_batch(features, self.group)
        all_labels = gather_labels(labels, self.group)
        if self.cloud is not None:
            all_ids = None if sample_ids is None else gather_labels(sample_ids, self.group)
            self.cloud.observe(gathered.detach(), all_labels, all_ids)
        if self.cloud is None or epoch < self.cloud_start_epoch:
            loss, correct = sharded_margin_softmax_cross_entropy(
                self.head, gathered, all_labels, self.shard, self._workspace, self.group
            )
            self._last = {"loss": loss.detach(), "correct": correct, "cloud_std": None}
            return loss
        variance = self.cloud.sample_variance(all_labels, self.cloud.cloud_variance())
        index = None
        weights = None
        per_sample = variance
        if self.cloud.cloud_samples > 1:
            index, repeats = self.cloud.repeat_index(variance)
            dtype = compute_dtype(features, self.head.weight)
            weights = (1.0 / (repeats[index].to(torch.float64) * all_labels.numel())).to(dtype)
            gathered, all_labels, variance = gathered[index], all_labels[index], variance[index]
        rows, offsets = self.cloud.draw_rows(variance, buffer=self._offsets)
        loss, correct = sharded_margin_softmax_cross_entropy(
            self.head,
            gathered,
            all_labels,
            self.shard,
            self._workspace,
            self.group,
            rows,
            offsets,
            self.cloud.shifts_other_logits,
            weights,
        )
        std = per_sample.sqrt()
        self._last = {"loss": loss.detach(), "correct": correct, "cloud_std": std}
        return loss

    def figures(self) -> dict[str, float]:
        """:meth:`LEAPLoss.figures <leap_core.losses.LEAPLoss.figures>` of the gathered
        batch, the same on every rank (every rank must call it: the angular variances are
        summed over the shards)."""
        return step_figures(self._last, self.cloud)

    def _offsets(self, shape: tuple[int, ...]) -> torch.Tensor:
        return self._workspace.take("offsets", shape, torch.float32, self.head.weight.device)
