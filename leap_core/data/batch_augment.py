"""The training augmentations of :mod:`leap_core.data.transforms`, applied to a whole batch.

The per-image transforms run a dozen Python-level steps per picture, which on a small model
costs as much as the model itself. Here a batch of decoded, already resized uint8 images
``(B, 3, H, W)`` goes through the same steps as a few tensor operations: horizontal flip,
zero pad + random crop (a random shift of at most ``padding`` pixels with zeros shifted in),
``float32`` scaling and normalisation, random erasing with zeros. Each step draws its
parameters as the per-image transform does (same probabilities, ranges and rounding), so
batches follow the same distribution; only the order of the draws differs, so the exact
pixels of a seeded run are not those of the per-image path.

Random parameters are drawn on the CPU from torch's global generator (which checkpoints save
and restore) whatever device the pixels are on, so a seed gives the same augmentations on a
CPU and a GPU, and a resumed run continues the same stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torchvision.transforms.v2 import functional as F

from leap_core.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    _check_probability,
    _check_size,
    augment_settings,
)

if TYPE_CHECKING:
    from leap_core.config import JobSpec

#: ``v2.RandomErasing`` defaults: the erased area's share of the image, its aspect ratio,
#: and how many draws it makes before giving up on an image.
ERASING_SCALE: tuple[float, float] = (0.02, 0.33)
ERASING_RATIO: tuple[float, float] = (0.3, 3.3)
ERASING_ATTEMPTS = 10


@dataclass(frozen=True)
class BatchAugment:
    """Augment a uint8 batch ``(B, 3, height, width)`` into normalised ``float32``.

    Attributes:
        height, width: the image size (the batch must already have it).
        flip_p: probability of a horizontal flip, per image.
        padding: zero padding before the random crop back to size; 0 for none.
        erasing_p: probability of random erasing (value 0, after normalisation), per image.
        mean, std: per-channel normalisation after scaling pixels to [0, 1].
    """

    height: int
    width: int
    flip_p: float = 0.5
    padding: int = 0
    erasing_p: float = 0.0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        _check_size("height", self.height)
        _check_size("width", self.width)
        _check_probability("flip_p", self.flip_p)
        _check_probability("erasing_p", self.erasing_p)
        if isinstance(self.padding, bool) or not isinstance(self.padding, int) or self.padding < 0:
            raise ValueError(f"padding must be an integer >= 0, got {self.padding!r}")

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        expected = (3, self.height, self.width)
        if images.dtype != torch.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"expected a uint8 batch (B, {', '.join(map(str, expected))}), "
                f"got {images.dtype} {tuple(images.shape)}"
            )
        out, batch = images, len(images)
        if self.flip_p or self.padding:
            flips = torch.rand(batch) < self.flip_p
            if self.padding:
                offsets = torch.randint(0, 2 * self.padding + 1, (batch, 2))
            else:
                offsets = torch.zeros(batch, 2, dtype=torch.int64)
            out = flip_pad_crop(out, flips, self.padding, offsets)
        out = F.normalize(
            F.to_dtype(out, torch.float32, scale=True), list(self.mean), list(self.std)
        )
        if self.erasing_p:
            out = erase(out, erasing_boxes(batch, self.height, self.width, self.erasing_p))
        return out


def reid_batch_augment(
    height: int = 256,
    width: int = 128,
    *,
    padding: int = 10,
    flip_p: float = 0.5,
    erasing_p: float = 0.5,
) -> BatchAugment:
    """The batch form of :func:`~leap_core.data.transforms.reid_train_transform`."""
    return BatchAugment(height, width, flip_p, padding, erasing_p)


def face_batch_augment(size: int = 112, *, flip_p: float = 0.5) -> BatchAugment:
    """The batch form of :func:`~leap_core.data.transforms.face_train_transform`."""
    return BatchAugment(size, size, flip_p, 0, 0.0, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def flip_pad_crop(
    images: torch.Tensor, flips: torch.Tensor, padding: int, offsets: torch.Tensor
) -> torch.Tensor:
    """``RandomHorizontalFlip``, ``Pad(padding)`` and ``RandomCrop`` back to size, for the
    whole batch in one gather: image ``b`` is mirrored where ``flips[b]`` is true, padded
    with zeros and cropped at ``offsets[b]`` = (top, left) in the padded image, each in
    ``[0, 2 * padding]``. Zero padding is symmetric, so mirroring the padded image and
    reading its columns from the right is the same as padding the mirrored one."""
    batch, channels, height, width = images.shape
    device = images.device
    padded = torch.nn.functional.pad(images, (padding,) * 4) if padding else images
    padded_width = width + 2 * padding
    flips, offsets = flips.to(device), offsets.to(device)
    rows = offsets[:, 0, None] + torch.arange(height, device=device)  # (B, H)
    cols = offsets[:, 1, None] + torch.arange(width, device=device)  # (B, W)
    cols = torch.where(flips[:, None], padded_width - 1 - cols, cols)
    flat = rows[:, :, None] * padded_width + cols[:, None, :]  # (B, H, W) in the padded image
    index = flat.reshape(batch, 1, height * width).expand(batch, channels, height * width)
    source = padded.reshape(batch, channels, -1)
    return source.gather(2, index).reshape(batch, channels, height, width)


def erasing_boxes(batch: int, height: int, width: int, p: float) -> torch.Tensor:
    """Rectangles ``(B, 4)`` = (top, left, box height, box width) to erase, as
    ``v2.RandomErasing(p)`` draws them: with probability ``p`` per image, up to ten tries of
    an area share in ``ERASING_SCALE`` and a log-uniform aspect ratio in ``ERASING_RATIO``,
    the first box that fits strictly inside the image is kept at a uniform position. An
    image not chosen, or whose ten tries all fail, gets an empty box (height 0)."""
    chosen = torch.rand(batch) < p
    # float32 draws, float64 arithmetic and half-to-even rounding, as torchvision's
    # ``.item()`` and ``round()`` do
    share = torch.empty(batch, ERASING_ATTEMPTS).uniform_(*ERASING_SCALE).double()
    area = height * width * share
    log_ratio = torch.empty(batch, ERASING_ATTEMPTS).uniform_(
        math.log(ERASING_RATIO[0]), math.log(ERASING_RATIO[1])
    )
    ratio = log_ratio.exp().double()
    box_h = torch.round((area * ratio).sqrt()).long()
    box_w = torch.round((area / ratio).sqrt()).long()
    fits = (box_h < height) & (box_w < width)
    first = fits.long().argmax(dim=1)  # the first fitting try (0 when none fits)
    rows = torch.arange(batch)
    box_h, box_w = box_h[rows, first], box_w[rows, first]
    keep = chosen & fits.any(dim=1)
    box_h, box_w = box_h * keep, box_w * keep
    top = (torch.rand(batch) * (height - box_h + 1)).long()
    left = (torch.rand(batch) * (width - box_w + 1)).long()
    return torch.stack([top, left, box_h, box_w], dim=1)


def erase(images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Set every image's box ``(top, left, height, width)`` (see :func:`erasing_boxes`) to 0,
    in place (a product with the mask: a third of the time of ``masked_fill``)."""
    _, _, height, width = images.shape
    boxes = boxes.to(images.device)
    top, left, box_h, box_w = (boxes[:, k, None] for k in range(4))
    ys = torch.arange(height, device=images.device)
    xs = torch.arange(width, device=images.device)
    inside_rows = (ys >= top) & (ys < top + box_h)  # (B, H)
    inside_cols = (xs >= left) & (xs < left + box_w)  # (B, W)
    mask = inside_rows[:, None, :, None] & inside_cols[:, None, None, :]
    return images.mul_(~mask)


def train_augment(spec: JobSpec) -> BatchAugment:
    """The batch form of :func:`train_transform`, for images decoded and resized already."""
    kind, height, width, padding = augment_settings(spec)
    if kind == "face":
        return face_batch_augment(height)
    return reid_batch_augment(height, width, padding=padding)


def evaluation_augment(spec: JobSpec) -> BatchAugment:
    """The batch form of :func:`test_transform` (no randomness), for evaluation images
    decoded and resized already: equal to it pixel for pixel."""
    kind, height, width, _padding = augment_settings(spec)
    if kind == "face":
        return face_batch_augment(height, flip_p=0.0)
    return reid_batch_augment(height, width, padding=0, flip_p=0.0, erasing_p=0.0)
