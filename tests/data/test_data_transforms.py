"""Re-ID and face transforms at tiny sizes: shapes, value ranges, exact normalisation."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from leap_core.data import (
    face_test_transform,
    face_train_transform,
    reid_test_transform,
    reid_train_transform,
)
from leap_core.data.transforms import IMAGENET_MEAN, IMAGENET_STD


def half_image(width: int = 10, height: int = 20) -> Image.Image:
    """Left half black, right half white."""
    image = Image.new("RGB", (width, height), (0, 0, 0))
    image.paste((255, 255, 255), (width // 2, 0, width, height))
    return image


def test_reid_test_transform_normalises_exactly() -> None:
    out = reid_test_transform(8, 4)(Image.new("RGB", (4, 8), (255, 0, 51)))
    assert out.shape == (3, 8, 4) and out.dtype == torch.float32
    expected = [
        (1.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0],
        (0.0 - IMAGENET_MEAN[1]) / IMAGENET_STD[1],
        (0.2 - IMAGENET_MEAN[2]) / IMAGENET_STD[2],
    ]
    for channel, value in enumerate(expected):
        assert torch.allclose(out[channel], torch.full((8, 4), value), atol=1e-5)


def test_reid_train_shapes_and_flip() -> None:
    torch.manual_seed(0)
    transform = reid_train_transform(16, 8, padding=2, erasing_p=0.5)
    outs = [transform(half_image()) for _ in range(8)]
    assert all(o.shape == (3, 16, 8) for o in outs)
    flip_only = reid_train_transform(20, 10, padding=0, flip_p=1.0, erasing_p=0.0)
    out = flip_only(half_image())
    black = -IMAGENET_MEAN[0] / IMAGENET_STD[0]
    white = (1 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    assert out[0, :, 0].allclose(torch.full((20,), white), atol=1e-5)  # white now on the left
    assert out[0, :, -1].allclose(torch.full((20,), black), atol=1e-5)


def test_reid_random_erasing_fills_zero() -> None:
    torch.manual_seed(0)
    transform = reid_train_transform(32, 16, padding=0, flip_p=0.0, erasing_p=1.0)
    out = transform(Image.new("RGB", (16, 32), (255, 255, 255)))
    assert (out == 0).any() and (out > 1).any()


def test_face_transforms_map_to_minus_one_one() -> None:
    out = face_test_transform(12)(half_image(30, 30))
    assert out.shape == (3, 12, 12)
    assert out.min().item() == pytest.approx(-1.0) and out.max().item() == pytest.approx(1.0)
    flipped = face_train_transform(12, flip_p=1.0)(half_image(30, 30))
    assert torch.equal(flipped, torch.flip(out, dims=[2]))


def test_bad_sizes() -> None:
    with pytest.raises(ValueError, match="height must be a positive integer, got 0"):
        reid_train_transform(0, 8)
    with pytest.raises(ValueError, match="flip_p must be a probability in \\[0, 1\\], got 2"):
        face_train_transform(8, flip_p=2)
    with pytest.raises(ValueError, match="padding must be an integer >= 0, got -1"):
        reid_train_transform(8, 4, padding=-1)
