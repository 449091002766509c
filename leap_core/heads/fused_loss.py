"""Margin-softmax cross-entropy with the feature cloud, fused into one autograd node, for a
shard of the classes (all of them in a one-process run).

Written as separate autograd operations, a step of a normalised-softmax head makes a new
``(batch, classes)`` tensor for every stage (shifted rows copied out and back, the target
scattered, the scale, the log-softmax, and as many again backwards), and the cloud's rows add
their own copies. At face scale those allocations and passes cost more than the feature
cloud's arithmetic. Here the loss and its gradient with respect to the cosines are formed in
the forward pass, in two reusable buffers (:class:`~leap_core.heads.workspace.Workspace`):

1. ``logits = s·cos``; the rows of samples with a cloud are moved in place
   (:func:`~leap_core.heads.angles.shift_rows_into`) and their derivative kept;
2. the target logit ``s·target(cos_y, α_y)`` is the head's own hook, run on the target
   cosines of the samples whose class this shard owns, under autograd, which also gives its
   derivative; the terms' per-class bias (logit adjustment) is added to every logit;
3. the cross-entropy of sample ``b`` over all classes is ``log Σ_j exp(z_bj − m_b) + m_b −
   (1 − ε)·z_b,y − ε·mean_j z_bj`` (``ε``: label smoothing); its pieces over all shards are
   reductions over the ranks (the row maximum ``m_b``, the sum of exponentials, the target
   logit, which only its owner contributes, the sum of the logits), and with one shard they
   are the row's own;
4. the gradient ``(softmax − q)·w·s`` (``q``: the smoothed target distribution, ``w``: the
   terms' sample weights) is formed in the exponentials' buffer and the row and target
   derivatives are applied to it. The backward pass only scales it, so it holds no
   collective.

With a class sample (Partial FC, :mod:`~leap_core.heads.class_sample`) the cosines are those
of the kept rows only, and every step above runs over them: the targets are found among the
kept rows (every positive is kept), the bias is the kept rows', and label smoothing spreads
over the classes the softmax covers.

The node supports one backward pass, which is what training does; a second one raises.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from leap_core.distributed.shard import ClassShard
from leap_core.heads.angles import apply_row_slope, shift_rows_into
from leap_core.heads.class_sample import SampledClasses
from leap_core.heads.cloud_rows import CloudRows
from leap_core.heads.loss_terms import LossTerms
from leap_core.heads.workspace import Workspace

#: The head's hook ``(cos_y, alpha_y, classes) -> target cosine``: ``classes`` are the
#: targets' columns of the head, which a per-class margin reads.
TargetFn = Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor], torch.Tensor]


class _MarginSoftmaxCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        cos: torch.Tensor,
        labels: torch.Tensor,
        workspace: Workspace,
        cloud: CloudRows | None,
        shard: ClassShard,
        terms: LossTerms,
        sample: SampledClasses | None,
        target_fn: TargetFn,
        scale: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(cos.device.type, enabled=False):
            batch, classes = cos.shape
            # ``columns``: the targets' rows of the head (a per-class margin reads them);
            # ``kept``: their columns of ``cos``, the same without a class sample.
            positions, columns = shard.owned(labels)
            kept = columns if sample is None else sample.columns(columns)
            logits = workspace.take("logits", (batch, classes), cos.dtype, cos.device)
            torch.mul(cos, scale, out=logits)

            alpha_y = None
            slope = None
            if cloud is not None and cloud.any:
                alpha_y = cloud.at_targets(batch, positions, kept, cos.dtype)
                if cloud.shift_others:
                    slope = shift_rows_into(
                        logits, cos, cloud.rows, cloud.offsets.to(cos.dtype), scale, workspace
                    )

            cos_y = cos[positions, kept].unsqueeze(1)
            target, target_slope = target_with_slope(target_fn, cos_y, alpha_y, columns)
            target_logit = target.squeeze(1) * scale
            if terms.logit_bias is not None:
                bias = terms.logit_bias.to(cos.dtype)
                if sample is not None:
                    bias = bias.index_select(0, sample.rows)
                logits.add_(bias)
                target_logit = target_logit + bias.index_select(0, kept)
            logits[positions, kept] = target_logit

            smoothing = terms.label_smoothing
            logit_sum = shard.sum(logits.sum(dim=1)) if smoothing else None
            in_softmax = shard.num_classes
            if smoothing and sample is not None:
                in_softmax = sample.total(shard)
            top = shard.max(logits.amax(dim=1))
            grad = workspace.take("grad", (batch, classes), cos.dtype, cos.device)
            torch.sub(logits, top.unsqueeze(1), out=grad).exp_()
            workspace.give_back(logits)
            total = shard.sum(grad.sum(dim=1))
            z_y = torch.zeros(batch, dtype=cos.dtype, device=cos.device)
            z_y[positions] = target_logit
            z_y = shard.sum(z_y)
            per_sample = total.log() + top - z_y
            if logit_sum is not None:
                per_sample = per_sample + smoothing * (z_y - logit_sum / in_softmax)
            correct = z_y >= top
            weights = terms.weights
            if weights is None:
                loss = per_sample.mean()
                row_weight = torch.full_like(total, scale / batch)
            else:
                weights = weights.to(cos.dtype)
                loss = (per_sample * weights).sum()
                row_weight = weights * scale

            # d loss / d logits = (softmax − q)·w with q = (1 − ε)·onehot + ε/C; d logits /
            # d cos = s, times the shifted rows' and the target's own derivatives.
            grad.mul_((row_weight / total).unsqueeze(1))
            if smoothing:
                grad.sub_((row_weight * (smoothing / in_softmax)).unsqueeze(1))
            on_target = row_weight[positions] * (1.0 - smoothing)
            grad_y = (grad[positions, kept] - on_target) * target_slope.squeeze(1)
            if slope is not None:
                assert cloud is not None
                apply_row_slope(grad, cloud.rows, slope, workspace)
            grad[positions, kept] = grad_y

        ctx.grad = grad
        ctx.workspace = workspace
        ctx.mark_non_differentiable(correct)
        return loss, correct

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor, _grad_correct: Any) -> tuple[Any, ...]:
        grad = ctx.grad
        if grad is None:
            raise RuntimeError(
                "the fused margin-softmax loss supports one backward pass; "
                "recompute the loss to differentiate it again"
            )
        # The buffer goes back to the pool now: it is read once more by the cosine's matrix
        # product, and nothing takes it again before this backward pass is over.
        ctx.grad = None
        grad.mul_(grad_loss)
        ctx.workspace.give_back(grad)
        return (grad, *([None] * 8))


def target_with_slope(
    target_fn: TargetFn, cos_y: torch.Tensor, alpha_y: torch.Tensor | None, classes: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The head's target cosine for ``cos_y`` (of targets ``classes``) and its elementwise
    derivative, taken by autograd on the small ``(n, 1)`` column (inside a forward pass, where
    grad is off)."""
    with torch.enable_grad():
        leaf = cos_y.detach().requires_grad_()
        target = target_fn(leaf, alpha_y, classes)
        (slope,) = torch.autograd.grad(target.sum(), leaf)
    return target.detach(), slope


def margin_softmax_cross_entropy(
    cos: torch.Tensor,
    labels: torch.Tensor,
    workspace: Workspace,
    cloud: CloudRows | None,
    shard: ClassShard,
    terms: LossTerms,
    sample: SampledClasses | None,
    target_fn: TargetFn,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss of scaled margin logits over all classes (or a class sample's), and whether
    each sample's target logit is the largest (the training accuracy, at no extra pass);
    every rank gets both.

    The first seven arguments are :meth:`MarginHead.loss <leap_core.heads.MarginHead.loss>`'s,
    in its order, with the cosines in place of the features; the head adds its own two.

    Args:
        cos: ``(B, C_shard)`` cosines of the batch (every rank's, in a sharded run) with
            this shard's classes (``(B, n)`` with the ``n`` kept rows of ``sample``), with
            gradient.
        labels: ``(B,)`` class indices over all classes.
        workspace: where the large buffers are borrowed from.
        cloud: the step's offsets (their ``offsets`` tensor is used as scratch; one per
            column of ``cos`` when they are drawn per logit), or ``None``.
        shard: the classes ``cos`` covers.
        terms: the sample weights, the per-class logit bias (of the shard's classes) and the
            label smoothing.
        sample: the kept rows of a Partial FC step, or ``None`` for every row.
        target_fn: the head's hook, ``(cos_y, alpha_y, classes) -> target cosine``,
            elementwise.
        scale: the logit scale ``s``.
    """
    loss, correct = _MarginSoftmaxCrossEntropy.apply(
        cos, labels, workspace, cloud, shard, terms, sample, target_fn, scale
    )
    return loss, correct
