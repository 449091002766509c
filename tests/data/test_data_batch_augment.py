"""Batch augmentation on uint8 tensors: the per-image transforms' pixels for given draws,
their distributions, shapes, dtypes and seeded determinism."""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from leap_core.data.batch_augment import (
    ERASING_SCALE,
    BatchAugment,
    erase,
    erasing_boxes,
    face_batch_augment,
    flip_pad_crop,
    reid_batch_augment,
)
from leap_core.data.transforms import face_test_transform, reid_test_transform


def noise(batch: int, height: int = 12, width: int = 6, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, height, width), dtype=torch.uint8, generator=generator)


def test_flip_pad_crop_matches_the_pil_steps_image_by_image() -> None:
    images, padding = noise(18), 2
    flips = torch.tensor([False, True] * 9)
    offsets = torch.tensor([(top, left) for top in range(3) for left in range(3)] * 2)
    offsets = offsets * 2  # 0, 2, 4: both edges and the centre of the padded image
    out = flip_pad_crop(images, flips, padding, offsets)
    assert out.shape == images.shape and out.dtype == torch.uint8
    for b in range(len(images)):
        pil: Image.Image = F.to_pil_image(images[b])
        if flips[b]:
            pil = F.horizontal_flip(pil)
        pil = F.pad(pil, [padding])  # zeros, as v2.Pad does
        top, left = offsets[b].tolist()
        expected = F.pil_to_tensor(F.crop(pil, top, left, 12, 6))
        assert torch.equal(out[b], expected), b


def test_shifted_crop_brings_in_zeros_at_the_edge() -> None:
    image = torch.full((1, 3, 4, 3), 200, dtype=torch.uint8)
    out = flip_pad_crop(image, torch.tensor([False]), 1, torch.tensor([[0, 2]]))
    # top offset 0: one padded row on top; left offset 2: one padded column on the right
    assert out[0, :, 0].eq(0).all() and out[0, :, :, 2].eq(0).all()
    assert out[0, :, 1:, :2].eq(200).all()


def test_without_randomness_it_is_the_test_transform() -> None:
    images = noise(5)
    plain = BatchAugment(12, 6, flip_p=0.0, padding=0, erasing_p=0.0)(images)
    expected = torch.stack([reid_test_transform(12, 6)(F.to_pil_image(i)) for i in images])
    assert torch.equal(plain, expected)
    face = BatchAugment(12, 12, 0.0, 0, 0.0, (0.5,) * 3, (0.5,) * 3)(noise(3, 12, 12))
    expected = torch.stack([face_test_transform(12)(F.to_pil_image(i)) for i in noise(3, 12, 12)])
    assert torch.equal(face, expected)


def test_shapes_dtypes_and_seeded_determinism() -> None:
    augment = reid_batch_augment(12, 6, padding=2)
    images = noise(16)
    torch.manual_seed(7)
    first = augment(images)
    torch.manual_seed(7)
    again = augment(images)
    torch.manual_seed(8)
    other = augment(images)
    assert first.shape == (16, 3, 12, 6) and first.dtype == torch.float32
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert torch.equal(images, noise(16))  # the stored pixels are never modified
    face = face_batch_augment(12, flip_p=1.0)(noise(2, 12, 12))
    assert torch.equal(
        face,
        torch.flip(
            BatchAugment(12, 12, 0.0, 0, 0.0, (0.5,) * 3, (0.5,) * 3)(noise(2, 12, 12)), dims=[3]
        ),
    )


def test_every_image_flipped_or_not_at_the_configured_rate() -> None:
    torch.manual_seed(0)
    # columns 0..5 of a ramp: a flipped image starts with the right-hand value
    ramp = torch.arange(6, dtype=torch.uint8).expand(4000, 3, 12, 6).contiguous() * 40
    out = BatchAugment(12, 6, flip_p=0.5, padding=0, erasing_p=0.0)(ramp)
    flipped = out[:, 0, 0, 0] > out[:, 0, 0, 5]
    assert 0.46 < flipped.float().mean().item() < 0.54


def test_crop_offsets_cover_the_padded_range_uniformly() -> None:
    torch.manual_seed(0)
    ones = torch.full((6000, 3, 12, 6), 255, dtype=torch.uint8)
    out = BatchAugment(12, 6, flip_p=0.0, padding=2, erasing_p=0.0, mean=(0, 0, 0), std=(1, 1, 1))(
        ones
    )
    zero_rows = (out[:, 0, :, 2] == 0).sum(dim=1)  # rows shifted in: |top - padding|
    counts = torch.bincount(zero_rows, minlength=3).float() / len(out)
    assert counts.tolist() == pytest.approx([1 / 5, 2 / 5, 2 / 5], abs=0.03)


def test_erasing_boxes_follow_torchvision_random_erasing() -> None:
    height, width, draws = 64, 32, 3000
    torch.manual_seed(0)
    boxes = erasing_boxes(draws, height, width, p=1.0)
    top, left, box_h, box_w = boxes.T
    assert ((box_h < height) & (box_w < width)).all()
    assert ((top + box_h <= height) & (left + box_w <= width) & (top >= 0) & (left >= 0)).all()
    erased = box_h > 0
    reference = v2.RandomErasing(p=1.0, value=0)
    image = torch.zeros(3, height, width)
    ref_boxes = [reference.make_params([image]) for _ in range(draws)]
    ref_erased = torch.tensor([b["v"] is not None for b in ref_boxes])
    ref_area = torch.tensor([b["h"] * b["w"] for b in ref_boxes if b["v"] is not None]).float()
    area = (box_h * box_w)[erased].float()
    assert erased.float().mean().item() == pytest.approx(ref_erased.float().mean().item(), abs=0.03)
    assert area.mean().item() == pytest.approx(ref_area.mean().item(), rel=0.05)
    share = area / (height * width)
    # rounding the sides moves the share a little outside the drawn range
    assert share.min().item() > ERASING_SCALE[0] / 2 and share.max().item() < ERASING_SCALE[1] * 1.3
    ratio = (box_h[erased] / box_w[erased]).float().log().mean().item()
    ref_ratio = [math.log(b["h"] / b["w"]) for b in ref_boxes if b["v"] is not None]
    # the fit test keeps more tall boxes on a tall image: both sides skew the same way
    assert ratio == pytest.approx(sum(ref_ratio) / len(ref_ratio), abs=0.05)
    torch.manual_seed(0)
    assert erasing_boxes(100, height, width, p=0.0)[:, 2].eq(0).all()


def test_erase_zeroes_exactly_the_box() -> None:
    images = torch.ones(2, 3, 8, 4)
    out = erase(images.clone(), torch.tensor([[1, 2, 3, 2], [0, 0, 0, 0]]))
    assert out[0].eq(0).sum().item() == 3 * 3 * 2
    assert out[0, :, 1:4, 2:4].eq(0).all() and out[1].eq(1).all()


def test_bad_input_is_refused() -> None:
    augment = BatchAugment(12, 6)
    with pytest.raises(ValueError, match="expected a uint8 batch"):
        augment(noise(2).float())
    with pytest.raises(ValueError, match="expected a uint8 batch"):
        augment(noise(2, 6, 12))
    with pytest.raises(ValueError, match="padding must be an integer >= 0, got -1"):
        BatchAugment(12, 6, padding=-1)
    with pytest.raises(ValueError, match="flip_p must be a probability"):
        BatchAugment(12, 6, flip_p=1.5)
