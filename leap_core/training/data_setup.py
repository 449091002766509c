"""From a ``JobSpec`` to what the trainer consumes: the manifest, its loader and the
evaluation splits.

Each piece is built beside what it builds (the dataset's splits in
:mod:`leap_core.data.readers`, the long-tail cut in :mod:`leap_core.data.long_tail`, the
sampler in :mod:`leap_core.data.samplers`, the loaders in :mod:`leap_core.data.decoded` and
:mod:`leap_core.data.datasets`); this module only assembles them. A training set whose
decoded pixels fit ``train.cache_decoded_mb`` is decoded once into memory and served by
:class:`~leap_core.data.decoded.DecodedBatches` (batch augmentation, no workers); a larger
one is read and transformed image by image by a ``DataLoader`` with ``train.num_workers``
processes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch.utils.data import DataLoader

from leap_core.config import JobSpec
from leap_core.data import LongTailManifest, Record, SplitListing
from leap_core.data.datasets import per_image_loader
from leap_core.data.decoded import DecodedBatches, decoded_bytes, decoded_loader
from leap_core.data.evaluation_images import EvaluationImages
from leap_core.data.long_tail import cut_for
from leap_core.data.readers import read_listing
from leap_core.data.samplers import ShardedSampler, sampler_for


@dataclass
class TrainingData:
    """Everything the trainer reads: the manifest, its loader and the evaluation splits.

    ``decoded`` says whether the loader serves images decoded once into memory
    (:class:`DecodedBatches`) rather than decoding each image at every step;
    ``evaluation_images`` serves the evaluation images, decoded once in what the training
    set leaves of ``train.cache_decoded_mb``."""

    listing: SplitListing
    manifest: LongTailManifest
    sampler: ShardedSampler
    loader: DataLoader | DecodedBatches
    steps_per_epoch: int
    query: list[Record]
    gallery: list[Record]
    evaluation_images: EvaluationImages
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
    manifest = cut_for(spec.dataset, listing)
    sampler = sampler_for(spec, list(manifest.labels), rank, world_size)
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
    decoded = isinstance(loader, DecodedBatches)
    budget = spec.train.cache_decoded_mb * 2**20
    if decoded:
        budget -= decoded_bytes(len(manifest.records), *spec.dataset.image_size)
    return TrainingData(
        listing,
        manifest,
        sampler,
        loader,
        steps,
        listing.split("query"),
        listing.split("gallery"),
        EvaluationImages(spec, budget),
        decoded=decoded,
    )
