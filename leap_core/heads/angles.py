"""Angles from cosines and the feature cloud's angular shift: the bottom of the heads.

Everything that turns cosines into angles lives here, once, and both the heads (their
logits, their target hooks) and the loss's autograd node import it:

* :data:`COS_EPS`: cosines are clamped to ``[−1 + COS_EPS, 1 − COS_EPS]`` before ``arccos``,
  whose derivative is infinite at ±1 (a feature that coincides with a weight would otherwise
  give an infinite gradient), and the derivative is zero where that clamp changed a value, as
  autograd's clamp would make it;
* the shift ``c ↦ cos(clip(arccos(c) + α))`` (eqs. 7-8, clip to ``[0, π]``) and its
  derivative, formed in place in buffers the caller owns, so a step makes no new
  ``(rows, classes)`` tensors: at face scale each would cost more to allocate than to fill;
* :func:`angular_shift`, the same shift as an autograd operation for the heads' logits and
  target hooks.

Two readings of the offset (spec §6) get two kernels:

* one offset per logit: ``arccos``, ``cos`` and ``sin`` of the whole block, as PyTorch's
  vectorised transcendental functions are the cheapest exact way to move every angle by its
  own amount;
* one offset per sample: no transcendental function on the block at all. With
  ``sin θ = √(1 − c²)``, ``cos(θ + α) = c·cos α − sin θ·sin α`` needs ``cos α`` and
  ``sin α`` once per row, and the clip becomes a comparison of ``c`` with a per-row
  threshold: ``θ + α < 0`` exactly when ``α < 0`` and ``c > cos α``, ``θ + α > π`` exactly
  when ``α > 0`` and ``c < −cos α``. The derivative is ``cos α + c·sin α / sin θ``, zero
  where the clip holds.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from leap_core.heads.workspace import Workspace

#: The clamp on cosines before ``arccos`` (module docstring).
COS_EPS = 1e-6

#: ``F.normalize``'s floor on a norm, so a zero weight row gives zero cosines, not NaN.
NORM_EPS = 1e-12


def compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float64 when any input is float64, else float32: cosines and angles are never taken
    in half precision, where ``arccos`` near ±1 loses all its digits."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def cosine_to_angle(cos: torch.Tensor) -> torch.Tensor:
    """Angles in radians from cosines, clamped so the gradient stays finite at ±1."""
    return torch.acos(cos.clamp(-1.0 + COS_EPS, 1.0 - COS_EPS))


def _clamp_with_mask(cos: torch.Tensor) -> torch.Tensor | None:
    """Clamp ``cos`` in place; return where it was left unchanged, or ``None`` when the
    clamp changed nothing (the usual case: the mask costs a pass only when needed)."""
    low, high = torch.aminmax(cos)
    if float(low) >= -1.0 + COS_EPS and float(high) <= 1.0 - COS_EPS:
        return None
    unchanged = (cos >= -1.0 + COS_EPS) & (cos <= 1.0 - COS_EPS)
    cos.clamp_(-1.0 + COS_EPS, 1.0 - COS_EPS)
    return unchanged


def shift_per_logit_(
    cos: torch.Tensor, offsets: torch.Tensor, workspace: Workspace
) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos`` and ``offsets`` are ``(n, C)`` buffers the caller owns, both overwritten; on
    return ``cos`` holds the moved cosines. Returns ``(moved, slope)``: ``moved`` is
    ``cos``, ``slope`` an ``(n, C)`` buffer lent by ``workspace`` (the caller gives it back).
    """
    unchanged = _clamp_with_mask(cos)
    slope = workspace.take("shift_scratch", tuple(cos.shape), cos.dtype, cos.device)
    torch.acos(cos, out=slope)
    angle = offsets.add_(slope).clamp_(0.0, math.pi)
    one = torch.ones((), dtype=cos.dtype, device=cos.device)
    torch.addcmul(one, cos, cos, value=-1.0, out=slope).rsqrt_()  # 1 / sin θ
    torch.cos(angle, out=cos)
    slope.mul_(torch.sin(angle, out=angle))
    if unchanged is not None:
        slope.mul_(unchanged)
    return cos, slope


def shift_per_sample_(
    cos: torch.Tensor, offsets: torch.Tensor, workspace: Workspace
) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos`` is an ``(n, C)`` buffer the caller owns, ``offsets`` ``(n, 1)`` (one angle per
    row). Returns ``(moved, slope)``, both ``(n, C)`` buffers lent by ``workspace``; the
    caller gives them back.

    The clip can only act on a row whose largest cosine is above its ``θ + α = 0``
    threshold or whose smallest is below its ``θ + α = π`` one; one pass finds each row's
    extremes, and the masks are built only when some row needs them (with offsets of a few
    tenths of a radian, only rows whose target is already almost reached do).
    """
    low, high = torch.aminmax(cos, dim=1, keepdim=True)
    unchanged = None
    if bool((low < -1.0 + COS_EPS).any() | (high > 1.0 - COS_EPS).any()):
        unchanged = _clamp_with_mask(cos)
    alpha = offsets.to(cos.dtype)
    cos_a, sin_a = torch.cos(alpha), torch.sin(alpha)
    shape = tuple(cos.shape)
    moved = workspace.take("shift_moved", shape, cos.dtype, cos.device)
    slope = workspace.take("shift_scratch", shape, cos.dtype, cos.device)
    one = torch.ones((), dtype=cos.dtype, device=cos.device)
    sin_t = torch.addcmul(one, cos, cos, value=-1.0, out=slope).sqrt_()
    torch.mul(cos, cos_a, out=moved).addcmul_(sin_t, sin_a, value=-1.0)
    torch.div(cos, sin_t, out=slope).mul_(sin_a).add_(cos_a)
    # Per-row clip thresholds; ±2 are never crossed by a cosine, so they mean "no clip".
    two = torch.full_like(alpha, 2.0)
    to_zero = torch.where(alpha < 0, torch.where(alpha > -math.pi, cos_a, -two), two)
    to_pi = torch.where(alpha > 0, torch.where(alpha < math.pi, -cos_a, two), -two)
    if bool((high > to_zero).any() | (low < to_pi).any()):
        clipped = workspace.take("shift_mask", shape, torch.bool, cos.device)
        for threshold, compare, value in ((to_zero, torch.gt, 1.0), (to_pi, torch.lt, -1.0)):
            compare(cos, threshold, out=clipped)
            moved.masked_fill_(clipped, value)
            slope.masked_fill_(clipped, 0.0)
        workspace.give_back(clipped)
    if unchanged is not None:
        slope.mul_(unchanged)
    return moved, slope


def shift_rows_into(
    logits: torch.Tensor,
    cos: torch.Tensor,
    rows: torch.Tensor,
    offsets: torch.Tensor,
    scale: float,
    workspace: Workspace,
) -> torch.Tensor:
    """Write ``scale · cos(clip(θ + α))`` into ``logits``' rows ``rows`` (offsets ``(n, C)``
    per logit or ``(n, 1)`` per sample; the caller's buffer, used as scratch) and return the
    rows' derivative, a buffer lent by ``workspace`` that :func:`apply_row_slope` uses and
    gives back."""
    picked = workspace.take("rows", (rows.numel(), cos.shape[1]), cos.dtype, cos.device)
    torch.index_select(cos, 0, rows, out=picked)
    moved, slope = shift_(picked, offsets, workspace)
    logits.index_copy_(0, rows, moved.mul_(scale))
    workspace.give_back(picked, moved)
    return slope


def apply_row_slope(
    grad: torch.Tensor, rows: torch.Tensor, slope: torch.Tensor, workspace: Workspace
) -> None:
    """Multiply ``grad``'s rows ``rows`` by the shift's derivative, and give it back."""
    picked = workspace.take("rows", tuple(slope.shape), grad.dtype, grad.device)
    torch.index_select(grad, 0, rows, out=picked)
    grad.index_copy_(0, rows, picked.mul_(slope))
    workspace.give_back(picked, slope)


def shift_(
    cos: torch.Tensor, offsets: torch.Tensor, workspace: Workspace
) -> tuple[torch.Tensor, torch.Tensor]:
    """Move the angles of ``cos`` (``(n, C)``, a buffer the caller owns, overwritten) by
    ``offsets``: ``(n, C)`` one per entry (overwritten) or ``(n, 1)`` one per row. Returns
    ``(moved, slope)``; the per-row kernel lends both from ``workspace``."""
    if offsets.shape[1] == cos.shape[1]:
        return shift_per_logit_(cos, offsets, workspace)
    return shift_per_sample_(cos, offsets, workspace)


class _AngularShift(torch.autograd.Function):
    """``cos(clip(arccos(clamp(c)) + offset))`` as an autograd operation, on the kernels
    above. The local derivative is formed in the forward pass, so the backward pass is one
    multiplication. The offset is a constant (the cloud's draws, the margin): no gradient
    flows into it."""

    @staticmethod
    def forward(ctx: Any, cos: torch.Tensor, offset: torch.Tensor, keep_zero: bool) -> torch.Tensor:
        offset = offset.to(cos.dtype)
        # The kernels move rows: any shape is viewed as rows of its last dimension.
        rows = cos.reshape(-1, cos.shape[-1]) if cos.dim() else cos.reshape(1, 1)
        offsets = offset.reshape(rows.shape[0], -1)
        moved, slope = shift_(rows.clone(), offsets.clone(), Workspace())
        moved, slope = moved.reshape(cos.shape), slope.reshape(cos.shape)
        if keep_zero:
            unmoved = offset == 0
            moved = torch.where(unmoved, cos, moved)
            slope = torch.where(unmoved, torch.ones_like(slope), slope)
        ctx.save_for_backward(slope)
        return moved

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (slope,) = ctx.saved_tensors
        return grad * slope, None, None


def angular_shift(cos: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """``cos(clip(θ + offset))`` with ``θ = arccos(cos)`` and ``clip`` to ``[0, π]``;
    ``offset`` has ``cos``'s shape or one column (one angle per row)."""
    return _AngularShift.apply(cos, offset, False)


def shifted_cosine(cos: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """:func:`angular_shift`, except that entries whose offset is exactly 0 keep ``cos``
    unchanged, so a zero offset reproduces the baseline bit for bit."""
    return _AngularShift.apply(cos, offset, True)
