"""From a ``DatasetSpec`` to the training manifest and loaders the trainer consumes.

A training set whose decoded pixels fit ``train.cache_decoded_mb`` is decoded once into
memory and served by :class:`~leap_core.data.decoded.DecodedBatches` (batch augmentation, no
workers); a larger one is read and transformed image by image by a ``DataLoader`` with
``train.num_workers`` processes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from leap_core.config import DatasetSpec, JobSpec
from leap_core.data import (
    ClassAwareSampler,
    ImageDataset,
    LongTailManifest,
    PKSampler,
    RandomSampler,
    Record,
    SplitListing,
    SynthConfig,
    exponential_long_tail,
    face_long_tail,
    face_test_transform,
    face_train_transform,
    full_training_set,
    generate_synthetic,
    read_dataset,
    reid_long_tail,
    reid_test_transform,
    reid_train_transform,
)
from leap_core.data.batch_augment import BatchAugment, face_batch_augment, reid_batch_augment
from leap_core.data.decoded import DecodedBatches, decode_images, decoded_bytes
from leap_core.data.samplers import ShardedSampler
from leap_core.home import leap_home
from leap_core.locks import file_lock

logger = logging.getLogger(__name__)

#: Marker written last into a generated synthetic dataset; a folder without it is incomplete.
SYNTHETIC_DONE = ".leap-synthetic-complete"


def default_data_home() -> Path:
    """Where generated datasets are cached: ``$LEAP_HOME/data`` (default ``.leap/data``)."""
    return leap_home() / "data"


def synthetic_root(spec: DatasetSpec) -> Path:
    """The folder of the synthetic dataset described by ``spec``, named by its settings so
    that different settings never share a folder."""
    if spec.root is not None:
        return Path(spec.root)
    settings = json.dumps(spec.synthetic.model_dump(), sort_keys=True)
    digest = hashlib.sha256(settings.encode()).hexdigest()[:12]
    return default_data_home() / f"synthetic-{digest}"


def ensure_synthetic(spec: DatasetSpec, progress: Callable[[int, int], None] | None = None) -> Path:
    """Generate the synthetic dataset unless a complete copy exists; returns its root.

    Generation happens in a temporary sibling folder renamed into place at the end, so an
    interrupted run never leaves a half-written dataset that a later run would trust. Two
    processes asking at once (two workers starting their first jobs on a fresh machine)
    take turns on a lock file beside the root: the first generates, the second finds the
    copy complete. A complete copy is never deleted or replaced, even by a generator that
    did not see the lock (another machine on a shared folder): that one discards its own.
    """
    root = synthetic_root(spec)
    if (root / SYNTHETIC_DONE).is_file():
        return root
    with file_lock(root.parent / f".{root.name}.lock"):
        if (root / SYNTHETIC_DONE).is_file():  # made while this process waited
            return root
        staging = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
        try:
            generate_synthetic(staging / "data", _synth_config(spec), progress=progress)
            (staging / "data" / SYNTHETIC_DONE).write_text(json.dumps(spec.synthetic.model_dump()))
            install_generated(staging / "data", root)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return root


def _synth_config(spec: DatasetSpec) -> SynthConfig:
    synth = spec.synthetic
    return SynthConfig(
        identities=synth.identities,
        test_identities=synth.test_identities,
        cameras=synth.cameras,
        head=synth.head,
        tail_samples=synth.tail_samples,
        head_images=synth.head_images,
        tail_images=synth.tail_images,
        height=synth.height,
        width=synth.width,
        seed=synth.seed,
    )


def install_generated(generated: Path, root: Path) -> bool:
    """Move a complete generated copy to ``root``; returns whether it was installed. A
    complete copy already there is kept as it is (readers may be listing it), and the new
    one is left for the caller to discard. Only an incomplete leftover (no marker: an
    interrupted generation from before the staging folders) is replaced."""
    if (root / SYNTHETIC_DONE).is_file():
        return False
    if root.exists():
        shutil.rmtree(root)
    os.replace(generated, root)
    return True


def read_listing(
    spec: DatasetSpec, progress: Callable[[int, int], None] | None = None
) -> SplitListing:
    """All splits of the dataset named by ``spec``."""
    if spec.format == "synthetic":
        return read_dataset("market1501", ensure_synthetic(spec, progress))
    return read_dataset(
        spec.format,
        spec.root,
        skip_bad=spec.skip_bad,
        holdout=spec.holdout,
        seed=spec.long_tail.seed,
    )


def build_manifest(spec: DatasetSpec, listing: SplitListing) -> LongTailManifest:
    """Cut the training split as ``spec.long_tail`` says (spec §7)."""
    records = listing.split("train")
    tail = spec.long_tail
    common: dict[str, Any] = {"seed": tail.seed, "head_selection": tail.head_selection}
    # LongTailSpec's validator guarantees the fields each kind needs.
    if tail.kind == "reid":
        assert tail.head is not None
        return reid_long_tail(records, head=tail.head, tail_samples=tail.tail_samples, **common)
    if tail.kind == "face":
        assert tail.head is not None and tail.tail_classes is not None
        return face_long_tail(
            records,
            head=tail.head,
            tail_classes=tail.tail_classes,
            tail_samples=tail.tail_samples,
            **common,
        )
    if tail.kind == "exponential":
        assert tail.imbalance_factor is not None
        return exponential_long_tail(
            records,
            imbalance_factor=tail.imbalance_factor,
            head_threshold=tail.head_threshold,
            **common,
        )
    if spec.format == "synthetic":
        # The generator already cut the tail; re-deriving it marks head and tail classes.
        synth = spec.synthetic
        return reid_long_tail(
            records, head=synth.head, tail_samples=synth.tail_cap(), seed=tail.seed
        )
    return full_training_set(records, seed=tail.seed)


def make_sampler(
    spec: JobSpec, labels: list[int], rank: int = 0, world_size: int = 1
) -> ShardedSampler:
    """The spec's sampler; with ``world_size > 1``, rank ``rank``'s share of each epoch
    (every rank the same number of batches, so their collectives stay in step)."""
    sampler = spec.train.sampler
    seed = spec.train.seed
    if sampler.kind == "pk":
        return PKSampler(
            labels,
            identities=sampler.identities,
            instances=sampler.instances,
            seed=seed,
            rank=rank,
            world_size=world_size,
        )
    if sampler.kind == "class_aware":
        return ClassAwareSampler(labels, seed=seed, rank=rank, world_size=world_size)
    return RandomSampler(len(labels), seed=seed, rank=rank, world_size=world_size)


@dataclass
class TrainingData:
    """Everything the trainer reads: the manifest, its loader and the evaluation splits.

    ``decoded`` says whether the loader serves images decoded once into memory
    (:class:`DecodedBatches`) rather than decoding each image at every step."""

    listing: SplitListing
    manifest: LongTailManifest
    sampler: ShardedSampler
    loader: DataLoader | DecodedBatches
    steps_per_epoch: int
    query: list[Record]
    gallery: list[Record]
    decoded: bool = False


def prepare_data(
    spec: JobSpec,
    progress: Callable[[int, int], None] | None = None,
    listing: SplitListing | None = None,
    decode_progress: Callable[[int, int], None] | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> TrainingData:
    """Read, cut and wrap the dataset; ``progress`` reports synthetic generation and
    ``decode_progress`` the one-time decoding of the training images (without it, decoding
    a large set is reported in the log).

    ``listing`` replaces the dataset's own splits (sweeps pass one whose query and gallery
    are training identities held out for validation). ``rank`` of ``world_size`` takes its
    share of every epoch's batches (a distributed run)."""
    listing = listing if listing is not None else read_listing(spec.dataset, progress)
    manifest = build_manifest(spec.dataset, listing)
    sampler = make_sampler(spec, list(manifest.labels), rank, world_size)
    batch = spec.train.sampler.batch()
    steps = len(sampler) // batch  # the loaders drop a short last batch
    if steps == 0:
        raise ValueError(
            f"train.sampler: a batch of {batch} images is larger than one epoch "
            f"of the sampler ({len(sampler)} images)"
        )
    loader: DataLoader | DecodedBatches | None = decoded_loader(
        spec, manifest, sampler, decode_progress
    )
    if loader is None:
        loader = per_image_loader(spec, manifest, sampler)
    if spec.train.steps_per_epoch is not None:
        steps = min(steps, spec.train.steps_per_epoch)
    return TrainingData(
        listing,
        manifest,
        sampler,
        loader,
        steps,
        listing.split("query"),
        listing.split("gallery"),
        decoded=isinstance(loader, DecodedBatches),
    )


def per_image_loader(
    spec: JobSpec, manifest: LongTailManifest, sampler: ShardedSampler
) -> DataLoader:
    """The loader that reads, decodes and transforms every image at every step."""
    dataset = ImageDataset.from_manifest(manifest, train_transform(spec))
    return DataLoader(
        dataset,
        batch_size=spec.train.sampler.batch(),
        sampler=sampler,
        drop_last=True,
        num_workers=spec.train.num_workers,
        persistent_workers=spec.train.num_workers > 0,
        pin_memory=torch.cuda.is_available(),
    )


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


def _train_settings(spec: JobSpec) -> tuple[str, int, int, int]:
    """(kind, height, width, padding) of the augmenting transform; checks face sizes."""
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
    kind, height, width, padding = _train_settings(spec)
    if kind == "face":
        return face_train_transform(height)
    return reid_train_transform(height, width, padding=padding)


def train_augment(spec: JobSpec) -> BatchAugment:
    """The batch form of :func:`train_transform`, for images decoded and resized already."""
    kind, height, width, padding = _train_settings(spec)
    if kind == "face":
        return face_batch_augment(height)
    return reid_batch_augment(height, width, padding=padding)


def test_transform(spec: JobSpec) -> Callable:
    """Deterministic transform matching :func:`train_transform`."""
    height, width = spec.dataset.image_size
    if spec.dataset.transform_kind() == "face":
        return face_test_transform(height)
    return reid_test_transform(height, width)


def test_loader(records: list[Record], spec: JobSpec) -> DataLoader:
    """Deterministic loader over evaluation images (targets are pids)."""
    dataset = ImageDataset(records, test_transform(spec))
    return DataLoader(
        dataset, batch_size=spec.eval.batch_size, shuffle=False, num_workers=spec.train.num_workers
    )
