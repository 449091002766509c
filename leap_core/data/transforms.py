"""Image transforms for re-ID and face training, with the paper's defaults and any size.

Re-ID (the strong-baseline recipe the paper builds on): resize to 256×128, horizontal flip,
pad 10 then random crop back, ImageNet normalisation, random erasing. Face (insightface):
112×112, horizontal flip, scale to [-1, 1]. Sizes are parameters so tests run at a few pixels.
All transforms take a PIL image and return a float32 ``(3, H, W)`` tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torchvision.transforms import v2

if TYPE_CHECKING:
    from leap_core.config import JobSpec

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def _check_size(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _check_probability(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)


def _to_tensor() -> list[v2.Transform]:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]


def reid_train_transform(
    height: int = 256,
    width: int = 128,
    *,
    padding: int = 10,
    flip_p: float = 0.5,
    erasing_p: float = 0.5,
) -> v2.Compose:
    """Resize, flip, pad + random crop, ImageNet normalisation, random erasing."""
    size = (_check_size("height", height), _check_size("width", width))
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be an integer >= 0, got {padding!r}")
    steps: list[v2.Transform] = [
        v2.Resize(size, antialias=True),
        v2.RandomHorizontalFlip(_check_probability("flip_p", flip_p)),
    ]
    if padding:
        steps += [v2.Pad(padding), v2.RandomCrop(size)]
    steps += [*_to_tensor(), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    erasing = _check_probability("erasing_p", erasing_p)
    if erasing:
        steps.append(v2.RandomErasing(p=erasing, value=0))
    return v2.Compose(steps)


def reid_test_transform(height: int = 256, width: int = 128) -> v2.Compose:
    """Resize and ImageNet normalisation, no randomness."""
    size = (_check_size("height", height), _check_size("width", width))
    return v2.Compose(
        [v2.Resize(size, antialias=True), *_to_tensor(), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    )


def face_train_transform(size: int = 112, *, flip_p: float = 0.5) -> v2.Compose:
    """Resize to ``size``×``size``, flip, map pixels to [-1, 1]."""
    side = _check_size("size", size)
    return v2.Compose(
        [
            v2.Resize((side, side), antialias=True),
            v2.RandomHorizontalFlip(_check_probability("flip_p", flip_p)),
            *_to_tensor(),
            v2.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        ]
    )


def face_test_transform(size: int = 112) -> v2.Compose:
    """Resize to ``size``×``size`` and map pixels to [-1, 1], no randomness."""
    return face_train_transform(size, flip_p=0.0)


def augment_settings(spec: JobSpec) -> tuple[str, int, int, int]:
    """(kind, height, width, padding) of a spec's augmenting transform; checks face sizes."""
    height, width = spec.dataset.image_size
    if spec.dataset.transform_kind() == "face":
        if height != width:
            raise ValueError(
                f"dataset.image_size must be square for face transforms, got {[height, width]}"
            )
        return "face", height, width, 0
    return "reid", height, width, max(1, round(10 * height / 256))


def train_transform(spec: JobSpec) -> Callable:
    """Augmenting per-image transform of the spec's kind, at the spec's image size."""
    kind, height, width, padding = augment_settings(spec)
    if kind == "face":
        return face_train_transform(height)
    return reid_train_transform(height, width, padding=padding)


def test_transform(spec: JobSpec) -> Callable:
    """Deterministic transform matching :func:`train_transform`."""
    height, width = spec.dataset.image_size
    if spec.dataset.transform_kind() == "face":
        return face_test_transform(height)
    return reid_test_transform(height, width)
