"""Normalised-softmax classification heads: NormFace, CosFace and ArcFace.

Each takes ``(embedding_dim, num_classes, scale=..., margin=...)``, holds ``weight`` of shape
``(num_classes, embedding_dim)`` and maps ``(features, labels, alpha=None)`` to scaled logits;
``loss`` is the training step. Margins are in radians for ArcFace and in cosine units for
CosFace. A new margin is a subclass of :class:`MarginHead` that overrides
``target_cosine`` (see ``cosface.py``), and one entry in :data:`leap_core.families.HEADS`.

The layers, bottom first: ``workspace`` (reused buffers), ``angles`` (the cosine clamp and
the angular shift), ``cloud_rows`` (a step's offsets), ``loss_terms`` (a step's sample
weights, logit bias and label smoothing), ``class_sample`` (Partial FC's kept rows of a
step), ``fused_loss`` (the loss's autograd node, for a
shard of the classes), ``base`` (the head), the three heads.
"""

from leap_core.families import HEADS as FAMILIES
from leap_core.families import load
from leap_core.heads.angles import COS_EPS
from leap_core.heads.arcface import ArcFaceHead
from leap_core.heads.base import MarginHead
from leap_core.heads.class_sample import ClassSampler, SampledClasses
from leap_core.heads.cloud_rows import CloudRows
from leap_core.heads.cosface import CosFaceHead
from leap_core.heads.normface import NormFaceHead

#: ``head.kind`` → the head class, from the one table a new head is added to
#: (:data:`leap_core.families.HEADS`, which the spec reads without torch).
HEADS: dict[str, type[MarginHead]] = {name: load(FAMILIES, name) for name in FAMILIES}

__all__ = [
    "COS_EPS",
    "HEADS",
    "ArcFaceHead",
    "ClassSampler",
    "CloudRows",
    "CosFaceHead",
    "MarginHead",
    "NormFaceHead",
    "SampledClasses",
]
