"""Convolutional backbones: torchvision ResNets and a small CNN for CPU runs.

ImageNet weights are never downloaded at run time: training jobs run on machines that may
have no internet, and a silent download inside a job is a surprise. When weights are asked
for, they must already sit in the local torch hub cache; otherwise the error says where to
put them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from torchvision import models as tv_models

from leap_core import families


class PretrainedWeightsMissing(FileNotFoundError):
    """ImageNet weights were requested but are not in the local torch cache."""


def _resnet_weights(name: str) -> tv_models.WeightsEnum:
    return {
        "resnet18": tv_models.ResNet18_Weights.IMAGENET1K_V1,
        "resnet50": tv_models.ResNet50_Weights.IMAGENET1K_V1,
    }[name]


def cached_weights_path(name: str) -> Path:
    """Where torchvision would cache the ImageNet weights of ``name``."""
    url = _resnet_weights(name).url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def _load_cached_weights(name: str) -> dict[str, torch.Tensor]:
    path = cached_weights_path(name)
    if not path.is_file():
        url = _resnet_weights(name).url
        raise PretrainedWeightsMissing(
            f"model.pretrained=true needs ImageNet weights for {name} at {path}; download "
            f"{url} to that path on a machine with internet access (or set TORCH_HOME to a "
            f"folder holding checkpoints/{path.name}), or set model.pretrained=false"
        )
    return torch.load(path, map_location="cpu", weights_only=True)


class ResNetTrunk(nn.Module):
    """A torchvision ResNet without its pooling and classifier: images to a feature map."""

    def __init__(
        self, name: Literal["resnet18", "resnet50"], pretrained: bool, last_stride: int
    ) -> None:
        super().__init__()
        network = getattr(tv_models, name)(weights=None)
        if pretrained:
            network.load_state_dict(_load_cached_weights(name))
        if last_stride == 1:
            # Re-ID practice: keep a 16×8 map at 256×128 input for finer part detail.
            block = network.layer4[0]
            conv = block.conv2 if name == "resnet50" else block.conv1
            conv.stride = (1, 1)
            block.downsample[0].stride = (1, 1)
        self.body = nn.Sequential(
            network.conv1,
            network.bn1,
            network.relu,
            network.maxpool,
            network.layer1,
            network.layer2,
            network.layer3,
            network.layer4,
        )
        self.out_channels = 2048 if name == "resnet50" else 512

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)


class TinyCNN(nn.Module):
    """Four conv-BN-ReLU stages (stride 2 after each of the first three): a model that
    learns something from 32×32-to-128×64 images within a minute on two CPU cores."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        channels = [3, width, width * 2, width * 4, width * 8]
        layers: list[nn.Module] = []
        for index in range(4):
            layers += [
                nn.Conv2d(channels[index], channels[index + 1], 3, padding=1, bias=False),
                nn.BatchNorm2d(channels[index + 1]),
                nn.ReLU(inplace=True),
            ]
            if index < 3:
                layers.append(nn.MaxPool2d(2))
        self.body = nn.Sequential(*layers)
        self.out_channels = channels[-1]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)


def tiny_cnn_trunk(pretrained: bool, last_stride: int, width: int) -> nn.Module:
    """The small CNN of the CPU benchmarks and tests (``last_stride`` does not apply)."""
    if pretrained:
        raise ValueError("model.pretrained must be false for backbone 'tiny_cnn', got true")
    return TinyCNN(width)


def resnet18_trunk(pretrained: bool, last_stride: int, width: int) -> nn.Module:
    return ResNetTrunk("resnet18", pretrained, last_stride)


def resnet50_trunk(pretrained: bool, last_stride: int, width: int) -> nn.Module:
    return ResNetTrunk("resnet50", pretrained, last_stride)


def build_backbone(
    name: str, pretrained: bool = False, last_stride: int = 1, width: int = 32
) -> nn.Module:
    """A trunk mapping images ``(B, 3, H, W)`` to a feature map with ``out_channels``; the
    names are the table :data:`leap_core.families.BACKBONES`."""
    if last_stride not in (1, 2):
        raise ValueError(f"model.last_stride must be 1 or 2, got {last_stride!r}")
    if name not in families.BACKBONES:
        raise ValueError(
            f"model.backbone must be one of {', '.join(families.BACKBONES)}, got {name!r}"
        )
    builder: Callable[[bool, int, int], nn.Module] = families.load(families.BACKBONES, name)
    return builder(pretrained, last_stride, width)
