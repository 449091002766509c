"""The shared pipeline of the normalised-softmax heads (spec §2 and §6).

A head turns embeddings into scaled logits: it normalises features and class weights, takes
their cosines, lets each sample's angular offsets ``alpha`` move every angle (the feature
cloud, eqs. 7-8), lets the subclass place its margin on the target logit, and scales.
Subclasses override one hook, :meth:`MarginHead.target_cosine`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from leap_core import checks

#: ``cos`` is clamped to ``[-1 + COS_EPS, 1 - COS_EPS]`` before ``arccos``: the derivative
#: of ``arccos`` is infinite at ±1, and a feature that coincides with a weight would
#: otherwise give an infinite gradient.
COS_EPS = 1e-6


def cosine_to_angle(cos: torch.Tensor) -> torch.Tensor:
    """Angles in radians from cosines, clamped so the gradient stays finite at ±1."""
    return torch.acos(cos.clamp(-1.0 + COS_EPS, 1.0 - COS_EPS))


def shifted_cosine(cos: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """``cos(clip(θ + offset))`` with ``clip`` to ``[0, π]``; entries whose offset is exactly 0
    keep ``cos`` unchanged, so a zero offset reproduces the baseline bit for bit."""
    moved = torch.cos((cosine_to_angle(cos) + offset).clamp(0.0, math.pi))
    return torch.where(offset != 0, moved, cos)


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

    def __init__(self, embedding_dim: int, num_classes: int, scale: float,
                 margin: float = 0.0) -> None:
        super().__init__()
        self.embedding_dim = checks.positive_int("embedding_dim", embedding_dim)
        self.num_classes = checks.positive_int("num_classes", num_classes)
        self.scale = checks.finite_float("scale", scale, minimum=0.0, strict_minimum=True)
        self.margin = checks.finite_float("margin", margin, minimum=0.0)
        self.weight = nn.Parameter(torch.empty(self.num_classes, self.embedding_dim))
        nn.init.normal_(self.weight, std=0.01)

    def extra_repr(self) -> str:
        return (f"embedding_dim={self.embedding_dim}, num_classes={self.num_classes}, "
                f"scale={self.scale}, margin={self.margin}")

    def cosine(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, C)`` cosines between L2-normalised features and class weights, in float32
        (float64 for float64 inputs), outside any autocast region."""
        dtype = compute_dtype(features, self.weight)
        with torch.autocast(features.device.type, enabled=False):
            f = F.normalize(features.to(dtype), dim=1)
            w = F.normalize(self.weight.to(dtype), dim=1)
            return F.linear(f, w)

    def target_cosine(self, cos_y: torch.Tensor, alpha_y: torch.Tensor | None) -> torch.Tensor:
        """The target's cosine after the cloud offset and the margin; ``(B, 1)`` in and out.

        ``alpha_y`` is ``None`` when no offsets were given.
        """
        if alpha_y is None:
            return cos_y
        return shifted_cosine(cos_y, alpha_y)

    def forward(self, features: torch.Tensor, labels: torch.Tensor,
                alpha: torch.Tensor | None = None) -> torch.Tensor:
        """Scaled logits ``(B, C)``.

        Args:
            features: ``(B, D)`` embeddings, any floating dtype.
            labels: ``(B,)`` integer class indices in ``[0, C)``.
            alpha: optional ``(B, C)`` angular offsets in radians (spec §6); ``None`` or all
                zeros gives exactly the baseline logits of spec §2.
        """
        checks.features_tensor("features", features, self.embedding_dim)
        labels = checks.labels_tensor("labels", labels, features.shape[0], self.num_classes)
        cos = self.cosine(features)
        index = labels.unsqueeze(1)
        cos_y = cos.gather(1, index)
        alpha_y = None
        if alpha is not None:
            alpha = self._check_alpha(alpha, features.shape[0]).to(cos.dtype)
            alpha_y = alpha.gather(1, index)
            cos = self._shift_rows_with_offsets(cos, alpha)
        logits = cos.scatter(1, index, self.target_cosine(cos_y, alpha_y))
        return logits * self.scale

    @staticmethod
    def _shift_rows_with_offsets(cos: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """Apply the offsets only to samples that have any: head-class samples carry no cloud,
        and skipping their rows halves the angular work on a typical long-tailed batch."""
        rows = (alpha != 0).any(dim=1).nonzero().squeeze(1)
        if rows.numel() == 0:
            return cos
        if rows.numel() == cos.shape[0]:
            return shifted_cosine(cos, alpha)
        moved = shifted_cosine(cos.index_select(0, rows), alpha.index_select(0, rows))
        return cos.index_copy(0, rows, moved)

    def _check_alpha(self, alpha: object, batch: int) -> torch.Tensor:
        if not isinstance(alpha, torch.Tensor) or not alpha.is_floating_point():
            raise ValueError(f"alpha must be a floating-point tensor, got {alpha!r:.80}")
        if tuple(alpha.shape) != (batch, self.num_classes):
            raise ValueError(
                f"alpha must have shape ({batch}, {self.num_classes}), got {tuple(alpha.shape)}")
        return alpha.detach()
