"""The name → implementation tables whose implementations need torch.

A job spec names its head and its backbone, and the spec (with the API that validates it)
must list the accepted names without importing torch. So each of these families is one
table here, name → ``module:attribute`` where it lives, imported when first used. A new
margin head or backbone is its code and one entry here. (Dataset formats and learning-rate
schedules need no torch: their tables are ``leap_core.data.readers.READERS`` and
``leap_core.schedules.SCHEDULES``.)
"""

from __future__ import annotations

import importlib
from typing import Any

#: ``method.head.kind`` → the :class:`~leap_core.heads.MarginHead` subclass.
HEADS: dict[str, str] = {
    "normface": "leap_core.heads.normface:NormFaceHead",
    "cosface": "leap_core.heads.cosface:CosFaceHead",
    "arcface": "leap_core.heads.arcface:ArcFaceHead",
}

#: ``model.backbone`` → a builder ``(pretrained, last_stride, width) -> trunk``.
BACKBONES: dict[str, str] = {
    "resnet18": "leap_core.models.backbones:resnet18_trunk",
    "resnet50": "leap_core.models.backbones:resnet50_trunk",
    "tiny_cnn": "leap_core.models.backbones:tiny_cnn_trunk",
}


def load(table: dict[str, str], name: str) -> Any:
    """The implementation ``table`` names ``name`` (imported now)."""
    module, _, attribute = table[name].partition(":")
    return getattr(importlib.import_module(module), attribute)
