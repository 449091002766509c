"""CosFace (eq. 1) and LEAP-CosFace (eq. 7): an additive cosine margin on the target."""

from __future__ import annotations

import torch

from leap_core.heads.base import MarginHead


class CosFaceHead(MarginHead):
    """Target logit ``s·(cos(clip(θ_y + α_y)) − m)``, others ``s·cos(clip(θ_j + α_j))``.

    Args:
        embedding_dim: feature size ``D``.
        num_classes: number of training classes ``C``.
        scale: logit scale ``s``; the paper uses 24 for re-ID and 64 for faces.
        margin: cosine margin ``m_c`` (a difference of cosines, unitless); the paper uses
            0.2 for re-ID and 0.35 for faces.
    """

    def __init__(
        self, embedding_dim: int, num_classes: int, scale: float = 24.0, margin: float = 0.2
    ) -> None:
        super().__init__(embedding_dim, num_classes, scale=scale, margin=margin)

    def target_cosine(
        self, cos_y: torch.Tensor, alpha_y: torch.Tensor | None, classes: torch.Tensor
    ) -> torch.Tensor:
        return super().target_cosine(cos_y, alpha_y, classes) - self.margin_for(classes, cos_y)
