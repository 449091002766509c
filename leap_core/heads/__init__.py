"""Normalised-softmax classification heads: NormFace, CosFace and ArcFace.

Each takes ``(embedding_dim, num_classes, scale=..., margin=...)``, holds ``weight`` of shape
``(num_classes, embedding_dim)`` and maps ``(features, labels, alpha=None)`` to scaled logits.
Margins are in radians for ArcFace and in cosine units for CosFace.
"""

from leap_core.heads.arcface import ArcFaceHead
from leap_core.heads.base import COS_EPS, MarginHead
from leap_core.heads.cosface import CosFaceHead
from leap_core.heads.normface import NormFaceHead

__all__ = ["COS_EPS", "ArcFaceHead", "CosFaceHead", "MarginHead", "NormFaceHead"]
