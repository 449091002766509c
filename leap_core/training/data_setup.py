"""From a ``DatasetSpec`` to the training manifest and loaders the trainer consumes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
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
from leap_core.data.samplers import ShardedSampler
from leap_core.home import leap_home
from leap_core.locks import file_lock

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


def make_sampler(spec: JobSpec, labels: list[int]) -> ShardedSampler:
    sampler = spec.train.sampler
    seed = spec.train.seed
    if sampler.kind == "pk":
        return PKSampler(
            labels, identities=sampler.identities, instances=sampler.instances, seed=seed
        )
    if sampler.kind == "class_aware":
        return ClassAwareSampler(labels, seed=seed)
    return RandomSampler(len(labels), seed=seed)


@dataclass
class TrainingData:
    """Everything the trainer reads: the manifest, its loader and the evaluation splits."""

    listing: SplitListing
    manifest: LongTailManifest
    sampler: ShardedSampler
    loader: DataLoader
    steps_per_epoch: int
    query: list[Record]
    gallery: list[Record]


def prepare_data(
    spec: JobSpec,
    progress: Callable[[int, int], None] | None = None,
    listing: SplitListing | None = None,
) -> TrainingData:
    """Read, cut and wrap the dataset; ``progress`` reports synthetic generation.

    ``listing`` replaces the dataset's own splits (sweeps pass one whose query and gallery
    are training identities held out for validation)."""
    listing = listing if listing is not None else read_listing(spec.dataset, progress)
    manifest = build_manifest(spec.dataset, listing)
    dataset = ImageDataset.from_manifest(manifest, train_transform(spec))
    sampler = make_sampler(spec, list(manifest.labels))
    batch = spec.train.sampler.batch()
    loader = DataLoader(
        dataset,
        batch_size=batch,
        sampler=sampler,
        drop_last=True,
        num_workers=spec.train.num_workers,
        persistent_workers=spec.train.num_workers > 0,
        pin_memory=torch.cuda.is_available(),
    )
    steps = len(loader)
    if steps == 0:
        raise ValueError(
            f"train.sampler: a batch of {batch} images is larger than one epoch "
            f"of the sampler ({len(sampler)} images)"
        )
    if spec.train.steps_per_epoch is not None:
        steps = min(steps, spec.train.steps_per_epoch)
    return TrainingData(
        listing, manifest, sampler, loader, steps, listing.split("query"), listing.split("gallery")
    )


def train_transform(spec: JobSpec) -> Callable:
    """Augmenting transform of the spec's kind, at the spec's image size."""
    height, width = spec.dataset.image_size
    if spec.dataset.transform_kind() == "face":
        if height != width:
            raise ValueError(
                f"dataset.image_size must be square for face transforms, got {[height, width]}"
            )
        return face_train_transform(height)
    return reid_train_transform(height, width, padding=max(1, round(10 * height / 256)))


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
