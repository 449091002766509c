"""Margin-softmax cross-entropy with the feature cloud, fused into one autograd node.

Written as separate autograd operations, a step of a normalised-softmax head makes a new
``(batch, classes)`` tensor for every stage (shifted rows copied out and back, the target
scattered, the scale, the log-softmax, and as many again backwards), and the cloud's rows add
their own copies. At face scale those allocations and passes cost more than the feature
cloud's arithmetic. Here the loss and its gradient with respect to the cosines are formed in
the forward pass, in two reusable buffers (:class:`~leap_core.heads.workspace.Workspace`):

1. ``logits = s·cos``; the rows of samples with a cloud are moved in place
   (:mod:`leap_core.heads.row_shift`) and their derivative kept;
2. the target logit ``s·target(cos_y, α_y)`` is the head's own hook, run on the ``(B, 1)``
   target cosines under autograd, which also gives its derivative;
3. ``log_softmax`` and ``nll_loss`` are PyTorch's own kernels, so without offsets the loss is
   bit for bit ``F.cross_entropy`` of the head's logits;
4. the gradient ``(softmax − onehot)·w·s`` is formed in the log-softmax buffer and the row and
   target derivatives are applied to it. The backward pass only scales it.

The node supports one backward pass, which is what training does; a second one raises.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from leap_core.heads.row_shift import apply_row_slope, shift_rows_into
from leap_core.heads.workspace import Workspace

TargetFn = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]


class _MarginSoftmaxCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        cos: torch.Tensor,
        labels: torch.Tensor,
        weights: torch.Tensor | None,
        target_fn: TargetFn,
        scale: float,
        rows: torch.Tensor | None,
        row_offsets: torch.Tensor | None,
        shift_others: bool,
        workspace: Workspace,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(cos.device.type, enabled=False):
            batch, classes = cos.shape
            shape = (batch, classes)
            index = labels.unsqueeze(1)
            logits = workspace.take("logits", shape, cos.dtype, cos.device)
            torch.mul(cos, scale, out=logits)

            alpha_y = None
            slope = None
            drawn_buffer = row_offsets
            if rows is not None and row_offsets is not None and rows.numel() > 0:
                row_offsets = row_offsets.to(cos.dtype)
                row_target = (
                    row_offsets
                    if row_offsets.shape[1] == 1
                    else row_offsets.gather(1, index.index_select(0, rows))
                )
                alpha_y = torch.zeros(batch, 1, dtype=cos.dtype, device=cos.device)
                alpha_y.index_copy_(0, rows, row_target)
                if shift_others:
                    slope = shift_rows_into(logits, cos, rows, row_offsets, scale, workspace)

            cos_y = cos.gather(1, index)
            target, target_slope = target_with_slope(target_fn, cos_y, alpha_y)
            logits.scatter_(1, index, target * scale)
            correct = logits.argmax(dim=1) == labels

            grad = workspace.take("grad", shape, cos.dtype, cos.device)
            torch.log_softmax(logits, 1, out=grad)
            workspace.give_back(logits)
            if weights is None:
                loss = F.nll_loss(grad, labels)
                row_weight: torch.Tensor | float = scale / batch
            else:
                loss = (F.nll_loss(grad, labels, reduction="none") * weights).sum()
                row_weight = (weights * scale).unsqueeze(1)

            # d loss / d logits = (softmax − onehot)·w; d logits / d cos = s, times the
            # shifted rows' and the target's own derivatives.
            grad.exp_()
            grad.scatter_add_(1, index, torch.full_like(cos_y, -1.0))
            grad.mul_(row_weight)
            grad_y = grad.gather(1, index).mul_(target_slope)
            if slope is not None:
                assert rows is not None
                apply_row_slope(grad, rows, slope, workspace)
            grad.scatter_(1, index, grad_y)

        if drawn_buffer is not None:
            workspace.give_back(drawn_buffer)
        ctx.grad = grad
        ctx.workspace = workspace
        ctx.mark_non_differentiable(correct)
        return loss, correct

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor, _grad_correct: Any) -> tuple[Any, ...]:
        return (held_gradient(ctx, grad_loss), *([None] * 8))


def target_with_slope(
    target_fn: TargetFn, cos_y: torch.Tensor, alpha_y: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The head's target cosine for ``cos_y`` and its elementwise derivative, taken by
    autograd on the small ``(B, 1)`` column (inside a forward pass, where grad is off)."""
    with torch.enable_grad():
        leaf = cos_y.detach().requires_grad_()
        target = target_fn(leaf, alpha_y)
        (slope,) = torch.autograd.grad(target.sum(), leaf)
    return target.detach(), slope


def held_gradient(ctx: Any, grad_loss: torch.Tensor) -> torch.Tensor:
    """The backward pass of a loss whose gradient was formed in its forward pass: scale the
    held buffer, once. The buffer goes back to the pool now: it is read once more by the
    cosine's matrix product, and nothing takes it again before this backward pass is over."""
    grad = ctx.grad
    if grad is None:
        raise RuntimeError(
            "the fused margin-softmax loss supports one backward pass; "
            "recompute the loss to differentiate it again"
        )
    ctx.grad = None
    grad.mul_(grad_loss)
    ctx.workspace.give_back(grad)
    return grad


def margin_softmax_cross_entropy(
    cos: torch.Tensor,
    labels: torch.Tensor,
    target_fn: TargetFn,
    scale: float,
    workspace: Workspace,
    rows: torch.Tensor | None = None,
    row_offsets: torch.Tensor | None = None,
    shift_others: bool = True,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss of scaled margin logits, and whether each sample's target logit is the
    largest (the training accuracy, at no extra pass).

    Args:
        cos: ``(B, C)`` cosines, with gradient.
        labels: ``(B,)`` class indices.
        target_fn: the head's hook, ``(cos_y, alpha_y) -> target cosine``, elementwise.
        scale: the logit scale ``s``.
        workspace: where the large buffers are borrowed from.
        rows: indices of the samples with offsets; ``row_offsets`` their offsets, ``(n, C)``
            one per logit or ``(n, 1)`` one per sample. ``row_offsets`` is overwritten.
        shift_others: ``False`` moves only the target logit (``target_only``).
        weights: ``(B,)`` per-sample weights of a weighted sum; ``None`` is the batch mean.
    """
    loss, correct = _MarginSoftmaxCrossEntropy.apply(
        cos, labels, weights, target_fn, scale, rows, row_offsets, shift_others, workspace
    )
    return loss, correct
