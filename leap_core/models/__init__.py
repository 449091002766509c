"""Backbones and the embedding network (backbone, pooling, BN neck)."""

from leap_core.models.backbones import (
    PretrainedWeightsMissing,
    build_backbone,
    cached_weights_path,
)
from leap_core.models.embedding import EmbeddingModel

__all__ = ["EmbeddingModel", "PretrainedWeightsMissing", "build_backbone", "cached_weights_path"]
