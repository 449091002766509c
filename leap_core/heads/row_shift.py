"""The feature cloud's angular shift of whole logit rows, in place, with its derivative.

For the samples that have a cloud the head replaces every cosine ``c`` of the row by
``cos(clip(arccos(c) + α))`` (eqs. 7-8, clip to ``[0, π]``) and needs ``d/dc`` of that for
the backward pass. Both are formed here in buffers the caller owns, so a step makes no new
``(rows, classes)`` tensors: at face scale each would cost more to allocate than to fill.

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

Cosines are clamped to ``[−1 + COS_EPS, 1 − COS_EPS]`` first, and the derivative is zero
where that clamp changed a value, as autograd's clamp would make it.
"""

from __future__ import annotations

import math

import torch

from leap_core.heads.workspace import Workspace

#: Must equal :data:`leap_core.heads.base.COS_EPS` (kept here to avoid an import cycle).
COS_EPS = 1e-6


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
    """``cos`` and ``offsets`` are ``(n, C)`` buffers the caller owns; on return ``cos``
    holds the moved cosines and ``offsets`` the derivative. Returns ``(moved, slope)``,
    which are those two buffers."""
    unchanged = _clamp_with_mask(cos)
    scratch = workspace.take("shift_scratch", tuple(cos.shape), cos.dtype, cos.device)
    torch.acos(cos, out=scratch)
    angle = offsets.add_(scratch).clamp_(0.0, math.pi)
    one = torch.ones((), dtype=cos.dtype, device=cos.device)
    torch.addcmul(one, cos, cos, value=-1.0, out=scratch).rsqrt_()  # 1 / sin θ
    torch.cos(angle, out=cos)
    slope = torch.sin(angle, out=angle).mul_(scratch)
    workspace.give_back(scratch)
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
    per logit or ``(n, 1)`` per sample, overwritten) and return the rows' derivative, a
    buffer lent by ``workspace`` for :func:`apply_row_slope`."""
    picked = workspace.take("rows", (rows.numel(), cos.shape[1]), cos.dtype, cos.device)
    torch.index_select(cos, 0, rows, out=picked)
    shift = shift_per_sample_ if offsets.shape[1] == 1 else shift_per_logit_
    moved, slope = shift(picked, offsets, workspace)
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
