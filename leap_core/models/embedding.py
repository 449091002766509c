"""Backbone + pooling + BN neck: the network whose output is the test-time embedding."""

from __future__ import annotations

import torch
from torch import nn

from leap_core.config import BackboneName, JobSpec
from leap_core.models.backbones import build_backbone


class EmbeddingModel(nn.Module):
    """Images to embeddings ``f_n`` (spec §1: the BN-neck output, used in training and test).

    The BN neck (a BatchNorm1d whose bias is frozen at zero, as in the re-ID "bag of tricks")
    normalises the pooled features per dimension, which suits cosine heads. When
    ``embedding_dim`` differs from the trunk's channels a bias-free linear layer projects
    first.
    """

    def __init__(
        self,
        backbone: BackboneName = "resnet50",
        embedding_dim: int = 2048,
        pretrained: bool = False,
        last_stride: int = 1,
        bn_neck: bool = True,
        width: int = 32,
    ) -> None:
        super().__init__()
        if (
            isinstance(embedding_dim, bool)
            or not isinstance(embedding_dim, int)
            or embedding_dim < 1
        ):
            raise ValueError(
                f"model.embedding_dim must be a positive integer, got {embedding_dim!r}"
            )
        self.trunk = build_backbone(backbone, pretrained, last_stride, width)
        channels = int(self.trunk.out_channels)  # type: ignore[arg-type]  # an int attribute
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.projection = (
            nn.Identity()
            if channels == embedding_dim
            else nn.Linear(channels, embedding_dim, bias=False)
        )
        self.neck: nn.Module = nn.Identity()
        if bn_neck:
            neck = nn.BatchNorm1d(embedding_dim)
            neck.bias.requires_grad_(False)
            self.neck = neck
        self.embedding_dim = embedding_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(self.trunk(images)).flatten(1)
        return self.neck(self.projection(pooled))


def model_for(spec: JobSpec, pretrained: bool | None = None) -> EmbeddingModel:
    """The network ``spec.model`` describes; ``pretrained`` overrides the spec's (a model
    whose weights come from a checkpoint needs no ImageNet weights first)."""
    model = spec.model
    return EmbeddingModel(
        model.backbone,
        model.embedding_dim,
        model.pretrained if pretrained is None else pretrained,
        model.last_stride,
        model.bn_neck,
        model.width,
    )
