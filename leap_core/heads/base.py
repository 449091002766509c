"""The shared pipeline of the normalised-softmax heads (spec §2 and §6).

A head turns embeddings into scaled logits: it normalises features and class weights, takes
their cosines, lets each sample's angular offsets ``alpha`` move every angle (the feature
cloud, eqs. 7-8), lets the subclass place its margin on the target logit, and scales.
Subclasses override one hook, :meth:`MarginHead.target_cosine`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from leap_core import checks
from leap_core.heads.fused_loss import margin_softmax_cross_entropy
from leap_core.heads.workspace import Workspace

#: ``cos`` is clamped to ``[-1 + COS_EPS, 1 - COS_EPS]`` before ``arccos``: the derivative
#: of ``arccos`` is infinite at ±1, and a feature that coincides with a weight would
#: otherwise give an infinite gradient.
COS_EPS = 1e-6


def cosine_to_angle(cos: torch.Tensor) -> torch.Tensor:
    """Angles in radians from cosines, clamped so the gradient stays finite at ±1."""
    return torch.acos(cos.clamp(-1.0 + COS_EPS, 1.0 - COS_EPS))


class _AngularShift(torch.autograd.Function):
    """``cos(clip(arccos(clamp(c)) + offset))`` with a hand-written derivative.

    Autograd would record six operations and run about twenty-five kernels backwards; here
    the local derivative ``sin(φ)/sqrt(1 − c²)`` (zero where a clamp is active) is formed
    once in the forward pass and the backward pass is one multiplication. The offset is a
    constant (the cloud's draws, the margin): no gradient flows into it.
    """

    @staticmethod
    def forward(ctx, cos: torch.Tensor, offset: torch.Tensor, keep_zero: bool) -> torch.Tensor:
        clamped = cos.clamp(-1.0 + COS_EPS, 1.0 - COS_EPS)
        clipped = torch.acos(clamped).add_(offset).clamp_(0.0, math.pi)
        moved = torch.cos(clipped)
        # Zero where the cosine clamp is active, as autograd's clamp would give. Where the
        # angle clip is active, sin(0) = 0 and sin(π) ≈ -9e-8 already make it (near) zero.
        slope = torch.sin(clipped).mul_(torch.rsqrt(1.0 - clamped * clamped))
        slope.mul_(clamped == cos)
        if keep_zero:
            unmoved = offset == 0
            moved = torch.where(unmoved, cos, moved)
            slope = torch.where(unmoved, torch.ones_like(slope), slope)
        ctx.save_for_backward(slope)
        return moved

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (slope,) = ctx.saved_tensors
        return grad * slope, None, None


def angular_shift(cos: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """``cos(clip(θ + offset))`` with ``θ = arccos(cos)`` and ``clip`` to ``[0, π]``."""
    return _AngularShift.apply(cos, offset, False)


def shifted_cosine(cos: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """:func:`angular_shift`, except that entries whose offset is exactly 0 keep ``cos``
    unchanged, so a zero offset reproduces the baseline bit for bit."""
    return _AngularShift.apply(cos, offset, True)


class _CosineToWeights(torch.autograd.Function):
    """``cos[b, j] = f[b]·W[j] / |W[j]|`` for unit features ``f`` and raw class weights.

    Normalising ``W`` as a tensor (``F.normalize``) makes a ``(C, D)`` copy forwards and
    half a dozen ``(C, D)`` temporaries backwards; at 100,000 classes and D = 512 that is
    most of a CosFace step on a CPU. Here the norms scale the ``(B, C)`` product's columns,
    and the backward pass is two matrix products and one in-place pass over ``grad W``:
    ``∂cos[b, j]/∂W[j] = f[b]/|W[j]| − cos[b, j]·W[j]/|W[j]|²``.
    """

    @staticmethod
    def forward(ctx: Any, unit: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        inverse = weight.norm(dim=1).clamp_min(NORM_EPS).reciprocal()
        cos = F.linear(unit, weight).mul_(inverse)
        ctx.save_for_backward(unit, weight, inverse, cos)
        return cos

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        unit, weight, inverse, cos = ctx.saved_tensors
        scaled = grad * inverse
        grad_unit = scaled @ weight if ctx.needs_input_grad[0] else None
        grad_weight = None
        if ctx.needs_input_grad[1]:
            along = (grad * cos).sum(dim=0).mul_(inverse).mul_(inverse)
            grad_weight = scaled.t() @ unit
            grad_weight.addcmul_(weight, along.unsqueeze(1), value=-1.0)
        return grad_unit, grad_weight


#: ``F.normalize``'s floor on a norm, so a zero weight row gives zero cosines, not NaN.
NORM_EPS = 1e-12


def compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float64 when any input is float64, else float32: cosines and angles are never taken
    in half precision, where ``arccos`` near ±1 loses all its digits."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


class MarginHead(nn.Module):
    """Normalised linear classifier with a per-variant target-logit margin.

    Args:
        embedding_dim: size ``D`` of the features.
        num_classes: number ``C`` of training classes.
        scale: the logit scale ``s`` (> 0).
        margin: the margin; its unit is set by the subclass (a cosine for CosFace,
            radians for ArcFace), never degrees.
    """

    def __init__(
        self, embedding_dim: int, num_classes: int, scale: float, margin: float = 0.0
    ) -> None:
        super().__init__()
        self.embedding_dim = checks.positive_int("embedding_dim", embedding_dim)
        self.num_classes = checks.positive_int("num_classes", num_classes)
        self.scale = checks.finite_float("scale", scale, minimum=0.0, strict_minimum=True)
        self.margin = checks.finite_float("margin", margin, minimum=0.0)
        self.weight = nn.Parameter(torch.empty(self.num_classes, self.embedding_dim))
        nn.init.normal_(self.weight, std=0.01)

    def extra_repr(self) -> str:
        return (
            f"embedding_dim={self.embedding_dim}, num_classes={self.num_classes}, "
            f"scale={self.scale}, margin={self.margin}"
        )

    def cosine(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, C)`` cosines between L2-normalised features and class weights, in float32
        (float64 for float64 inputs), outside any autocast region."""
        dtype = compute_dtype(features, self.weight)
        with torch.autocast(features.device.type, enabled=False):
            unit = F.normalize(features.to(dtype), dim=1)
            return _CosineToWeights.apply(unit, self.weight.to(dtype))

    def target_cosine(self, cos_y: torch.Tensor, alpha_y: torch.Tensor | None) -> torch.Tensor:
        """The target's cosine after the cloud offset and the margin; ``(B, 1)`` in and out.

        ``alpha_y`` is ``None`` when no offsets were given.
        """
        if alpha_y is None:
            return cos_y
        return shifted_cosine(cos_y, alpha_y)

    def forward(
        self, features: torch.Tensor, labels: torch.Tensor, alpha: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Scaled logits ``(B, C)``.

        Args:
            features: ``(B, D)`` embeddings, any floating dtype.
            labels: ``(B,)`` integer class indices in ``[0, C)``.
            alpha: optional ``(B, C)`` angular offsets in radians (spec §6); ``None``, all
                zeros, or a sample whose row is all zeros gives exactly the baseline logits
                of spec §2.
        """
        checks.features_tensor("features", features, self.embedding_dim)
        labels = checks.labels_tensor("labels", labels, features.shape[0], self.num_classes)
        if alpha is None:
            return self.logits(features, labels)
        alpha = self._check_alpha(alpha, features.shape[0])
        rows = (alpha != 0).any(dim=1).nonzero().squeeze(1)
        return self.logits(features, labels, rows, alpha.index_select(0, rows))

    def logits(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        rows: torch.Tensor | None = None,
        row_alpha: torch.Tensor | None = None,
        shift_others: bool = True,
    ) -> torch.Tensor:
        """:meth:`forward` with the offsets given only for the samples that have them, and
        without argument checks (for a criterion that already checked its inputs).

        Args:
            rows: ``(n,)`` indices of the samples with offsets, or ``None`` for none.
            row_alpha: their offsets, ``(n, C)`` (one per logit) or ``(n, 1)`` (one per
                sample, shared by all its logits). Skipping the samples without offsets (the
                head classes' samples) roughly halves the angular work of a long-tailed batch
                and never builds a dense ``(B, C)`` offset matrix.
            shift_others: ``False`` moves only the target logit (the ``target_only``
                reading of spec §6); the other logits keep the baseline's cosines.
        """
        cos = self.cosine(features)
        index = labels.unsqueeze(1)
        cos_y = cos.gather(1, index)
        alpha_y = None
        if rows is not None and row_alpha is not None and rows.numel() > 0:
            row_alpha = row_alpha.detach().to(cos.dtype)
            row_target = (
                row_alpha
                if row_alpha.shape[1] == 1
                else row_alpha.gather(1, index.index_select(0, rows))
            )
            alpha_y = torch.zeros_like(cos_y).index_copy(0, rows, row_target)
            if shift_others:
                # Cloud draws are continuous, never exactly 0: no need for the zero check.
                moved = angular_shift(cos.index_select(0, rows), row_alpha)
                cos = cos.index_copy(0, rows, moved)
        logits = cos.scatter(1, index, self.target_cosine(cos_y, alpha_y))
        return logits * self.scale

    def loss(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        workspace: Workspace,
        rows: torch.Tensor | None = None,
        row_alpha: torch.Tensor | None = None,
        shift_others: bool = True,
        weights: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The cross-entropy of :meth:`logits` without materialising them more than once
        (:mod:`leap_core.heads.fused_loss`), and each sample's "target logit is the largest".

        ``row_alpha`` is used as scratch and overwritten; ``weights`` gives a weighted sum
        instead of the batch mean. The arguments are those of :meth:`logits`, unchecked.
        """
        alpha = None if row_alpha is None else row_alpha.detach()
        return margin_softmax_cross_entropy(
            self.cosine(features),
            labels,
            self.target_cosine,
            self.scale,
            workspace,
            rows,
            alpha,
            shift_others,
            weights,
        )

    def _check_alpha(self, alpha: object, batch: int) -> torch.Tensor:
        if not isinstance(alpha, torch.Tensor) or not alpha.is_floating_point():
            raise ValueError(f"alpha must be a floating-point tensor, got {alpha!r:.80}")
        if tuple(alpha.shape) != (batch, self.num_classes):
            raise ValueError(
                f"alpha must have shape ({batch}, {self.num_classes}), got {tuple(alpha.shape)}"
            )
        return alpha.detach()
