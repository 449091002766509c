"""Normalised-softmax classification heads: NormFace, CosFace and ArcFace.

Each takes ``(embedding_dim, num_classes, scale=..., margin=...)``, holds ``weight`` of shape
``(num_classes, embedding_dim)`` and maps ``(features, labels, alpha=None)`` to scaled logits.
Margins are in radians for ArcFace and in cosine units for CosFace.
"""

from leap_core.heads.arcface import ArcFaceHead
from leap_core.heads.base import COS_EPS, MarginHead
from leap_core.heads.cosface import CosFaceHead
from leap_core.heads.normface import NormFaceHead

#: ``head.kind`` → the head class: the one table a new head is added to.
HEADS: dict[str, type[MarginHead]] = {
    "normface": NormFaceHead,
    "cosface": CosFaceHead,
    "arcface": ArcFaceHead,
}

__all__ = ["COS_EPS", "HEADS", "ArcFaceHead", "CosFaceHead", "MarginHead", "NormFaceHead"]
