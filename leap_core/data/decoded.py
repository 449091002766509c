"""Training images decoded once into one uint8 tensor, and batches drawn from it.

Decoding a JPEG and running per-image transforms costs hundreds of microseconds a picture,
every epoch; on a small model that is as much as the training step. A training set that
fits a memory budget is decoded (and resized to the model's input size, the first step of
every training transform) once into a ``(N, 3, H, W)`` uint8 tensor: a 64×32 image takes
6 KiB, a 256×128 one 96 KiB, so Market-1501's 12,936 training images take 1.2 GiB.
:class:`DecodedBatches` then serves the sampler's order batch by batch with one gather and
the augmentation of :mod:`leap_core.data.batch_augment`, in the training process: no
per-image Python, no worker processes, and on CUDA only uint8 pixels cross the bus.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import torch
from torch.utils.data import Sampler
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from leap_core.data.batch_augment import train_augment
from leap_core.data.datasets import load_image

if TYPE_CHECKING:
    from leap_core.config import JobSpec
    from leap_core.data.manifest import LongTailManifest
    from leap_core.data.samplers import ShardedSampler

logger = logging.getLogger(__name__)

#: How often decoding reports progress (images), besides at the end.
PROGRESS_EVERY = 256


def decoded_bytes(images: int, height: int, width: int) -> int:
    """Memory of ``images`` decoded RGB images of ``height``×``width`` as uint8."""
    return images * 3 * height * width


def decode_images(
    paths: Sequence[str],
    size: tuple[int, int],
    progress: Callable[[int, int], None] | None = None,
    threads: int | None = None,
) -> torch.Tensor:
    """Decode every image once, resized to ``size`` = (height, width) exactly as the
    transforms' ``v2.Resize(size, antialias=True)`` does on a PIL image, into a uint8
    tensor ``(N, 3, H, W)`` in the order of ``paths``.

    Decoding and resizing release the GIL, so a few threads share the work; the result
    does not depend on their number. ``progress(done, total)`` is called every
    :data:`PROGRESS_EVERY` images and at the end.
    """
    height, width = size
    total = len(paths)
    store = torch.empty((total, 3, height, width), dtype=torch.uint8)
    resize = v2.Resize(size, antialias=True)

    def decode(index: int) -> None:
        store[index] = F.pil_to_tensor(resize(load_image(paths[index])))

    workers = threads if threads is not None else min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for done, _ in enumerate(pool.map(decode, range(total)), start=1):
            if progress is not None and (done % PROGRESS_EVERY == 0 or done == total):
                progress(done, total)
    return store


class DecodedBatches:
    """Batches ``(images, targets, camids)`` of a sampler's order, drawn from decoded images.

    What a ``DataLoader(..., drop_last=True)`` over the per-image dataset yields, with the
    images augmented by ``augment`` (uint8 batch in, float batch out) on ``device``: the
    trainer sets that to its own, so that on a GPU the pixels travel as uint8 and are
    augmented there. Targets and camids stay on the CPU, as a loader's would.

    Args:
        images: ``(N, 3, H, W)`` uint8, from :func:`decode_images`.
        targets, camids: one per image.
        sampler: the order of indices, re-read at every iteration (it follows its epoch).
        batch_size: images per batch; a short last batch is dropped.
        augment: the batch augmentation.
    """

    def __init__(
        self,
        images: torch.Tensor,
        targets: Sequence[int],
        camids: Sequence[int],
        sampler: Sampler[int],
        batch_size: int,
        augment: Callable[[torch.Tensor], torch.Tensor],
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be a uint8 (N, C, H, W) tensor, got {images.dtype}")
        if not len(images) == len(targets) == len(camids):
            raise ValueError(
                f"images, targets and camids must have one entry each, got "
                f"{len(images)}, {len(targets)} and {len(camids)}"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.images = images
        self.targets = torch.as_tensor(list(targets), dtype=torch.int64)
        self.camids = torch.as_tensor(list(camids), dtype=torch.int64)
        self.sampler = sampler
        self.batch_size = batch_size
        self.augment = augment
        self.device = torch.device("cpu")

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        order = torch.as_tensor(list(iter(self.sampler)), dtype=torch.int64)
        cuda = self.device.type == "cuda"
        for start in range(0, len(order) - self.batch_size + 1, self.batch_size):
            index = order[start : start + self.batch_size]
            pixels = self.images.index_select(0, index)
            if cuda:
                pixels = pixels.pin_memory().to(self.device, non_blocking=True)
            elif pixels.device != self.device:
                pixels = pixels.to(self.device)
            yield self.augment(pixels), self.targets[index], self.camids[index]


def decoded_loader(
    spec: JobSpec,
    manifest: LongTailManifest,
    sampler: ShardedSampler,
    progress: Callable[[int, int], None] | None = None,
) -> DecodedBatches | None:
    """Decode the training images once into memory and serve batches from there, or None
    (logged) when their pixels would exceed ``train.cache_decoded_mb``."""
    height, width = spec.dataset.image_size
    augment = train_augment(spec)  # refuses bad sizes before any decoding
    records = manifest.records
    needed = decoded_bytes(len(records), height, width)
    budget = spec.train.cache_decoded_mb * 2**20
    if needed > budget:
        logger.info(
            "training images: %d at %dx%d need %.1f MiB decoded, over train.cache_decoded_mb "
            "(%d); decoding and transforming each image at every step instead",
            len(records),
            height,
            width,
            needed / 2**20,
            spec.train.cache_decoded_mb,
        )
        return None
    logger.info(
        "training images: decoding %d at %dx%d once into memory (%.1f MiB)",
        len(records),
        height,
        width,
        needed / 2**20,
    )
    started = time.perf_counter()
    images = decode_images(
        [record.path for record in records], (height, width), progress or _LogProgress()
    )
    logger.info("training images: decoded in %.1f s", time.perf_counter() - started)
    return DecodedBatches(
        images,
        manifest.labels,
        [record.camid for record in records],
        sampler,
        spec.train.sampler.batch(),
        augment,
    )


class _LogProgress:
    """Decoding progress in the log, at every tenth of a large set (a worker has no bar)."""

    def __init__(self, least: int = 10_000) -> None:
        self.least = least
        self.tenths = 0

    def __call__(self, done: int, total: int) -> None:
        tenths = done * 10 // max(total, 1)
        if total >= self.least and tenths > self.tenths:
            self.tenths = tenths
            logger.info("training images: decoded %d of %d", done, total)
