"""NormFace: plain normalised softmax, ``s·cos θ_j`` for every class (spec §2)."""

from __future__ import annotations

from leap_core.heads.base import MarginHead


class NormFaceHead(MarginHead):
    """Normalised softmax without margin; with ``alpha`` it is the cloud applied to NormFace.

    Args:
        embedding_dim: feature size ``D``.
        num_classes: number of training classes ``C``.
        scale: logit scale ``s``.
        margin: must be 0; accepted so every head shares one constructor.
    """

    max_margin = 0.0  # no margin, so no per-class margins either

    def __init__(
        self, embedding_dim: int, num_classes: int, scale: float = 16.0, margin: float = 0.0
    ) -> None:
        if margin != 0:
            raise ValueError(f"margin must be 0 for NormFaceHead, got {margin!r}")
        super().__init__(embedding_dim, num_classes, scale=scale, margin=0.0)
