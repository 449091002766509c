"""Evaluation images decoded once per run, when they fit the decoding budget.

A run evaluates every ``eval.every_epochs`` epochs; read from disk, each evaluation decodes
and transforms every query and gallery image again. The training set is decoded once into
memory when it fits ``train.cache_decoded_mb`` (:mod:`leap_core.data.decoded`); the
evaluation images follow the same rule with what the training set leaves of that budget:
decoded at their first use into a uint8 tensor at the model's input size, then served as
normalised batches (:func:`~leap_core.data.batch_augment.evaluation_augment`, equal to the
test transform pixel for pixel). A set that does not fit is read image by image at every
evaluation, and the log says so once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import torch

from leap_core.data.batch_augment import evaluation_augment
from leap_core.data.datasets import test_loader
from leap_core.data.decoded import decode_images, decoded_bytes

if TYPE_CHECKING:
    from leap_core.config import JobSpec
    from leap_core.data.records import Record

logger = logging.getLogger(__name__)


class EvaluationImages:
    """Batches of evaluation images for the model, decoded once per set of records.

    Args:
        spec: the run's spec (image size, transform kind, ``eval.batch_size``).
        budget_bytes: memory the decoded sets may take together; a set that would exceed
            what is left is read from disk at every use.
    """

    def __init__(self, spec: JobSpec, budget_bytes: int) -> None:
        self.spec = spec
        self.budget_bytes = max(0, budget_bytes)
        self._decoded: dict[tuple[str, ...], torch.Tensor] = {}
        self._refused: set[tuple[str, ...]] = set()

    @property
    def decoded_bytes(self) -> int:
        """Memory the decoded sets hold now."""
        return sum(images.nbytes for images in self._decoded.values())

    def batches(
        self,
        records: Sequence[Record],
        progress: Callable[[int, int], None] | None = None,
    ) -> Iterator[torch.Tensor]:
        """Normalised float batches of ``records``' images, in order; ``progress(done,
        total)`` follows the one-time decoding."""
        key = tuple(record.path for record in records)
        images = self._decoded.get(key)
        if images is None and key not in self._refused:
            images = self._decode(key, progress)
        if images is None:
            for batch, _pids, _camids in test_loader(list(records), self.spec):
                yield batch
            return
        transform = evaluation_augment(self.spec)
        step = self.spec.eval.batch_size
        for start in range(0, len(images), step):
            yield transform(images[start : start + step])

    def _decode(
        self, key: tuple[str, ...], progress: Callable[[int, int], None] | None
    ) -> torch.Tensor | None:
        height, width = self.spec.dataset.image_size
        needed = decoded_bytes(len(key), height, width)
        if needed > self.budget_bytes - self.decoded_bytes:
            self._refused.add(key)
            logger.info(
                "evaluation images: %d at %dx%d need %.1f MiB decoded, over what "
                "train.cache_decoded_mb leaves (%.1f MiB); read from disk at every evaluation",
                len(key),
                height,
                width,
                needed / 2**20,
                (self.budget_bytes - self.decoded_bytes) / 2**20,
            )
            return None
        images = decode_images(list(key), (height, width), progress)
        self._decoded[key] = images
        return images
