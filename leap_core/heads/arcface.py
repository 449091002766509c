"""ArcFace (eq. 2) and LEAP-ArcFace (eq. 8): an additive angular margin on the target."""

from __future__ import annotations

import math

import torch

from leap_core.heads.angles import angular_shift
from leap_core.heads.base import MarginHead


class ArcFaceHead(MarginHead):
    """Target logit ``s·cos(clip(θ_y + α_y + m))``, others ``s·cos(clip(θ_j + α_j))``.

    ``clip`` clamps the angle to ``[0, π]`` as the paper states for eqs. 7-8, so the target
    logit is monotone in ``θ_y`` over the whole range (no "easy margin" tricks).

    Args:
        embedding_dim: feature size ``D``.
        num_classes: number of training classes ``C``.
        scale: logit scale ``s``; the paper uses 16 for re-ID and 64 for faces.
        margin: angular margin ``m_a`` in **radians** (not degrees); the paper uses 0.2 for
            re-ID and 0.5 for faces.
    """

    def __init__(
        self, embedding_dim: int, num_classes: int, scale: float = 16.0, margin: float = 0.2
    ) -> None:
        super().__init__(embedding_dim, num_classes, scale=scale, margin=margin)
        if self.margin > math.pi:
            raise ValueError(f"margin must be at most π radians, got {margin!r}")

    max_margin = math.pi

    def target_cosine(
        self, cos_y: torch.Tensor, alpha_y: torch.Tensor | None, classes: torch.Tensor
    ) -> torch.Tensor:
        margin = torch.zeros_like(cos_y).add_(self.margin_for(classes, cos_y))
        return angular_shift(cos_y, margin if alpha_y is None else alpha_y + margin)
