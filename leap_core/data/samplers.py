"""Index samplers for long-tailed training: identity-balanced P×K, class-aware and random.

All three are deterministic per ``(seed, epoch)`` (call ``set_epoch`` each epoch, as with
``torch.utils.data.DistributedSampler``) and shard across ``(rank, world_size)``: every rank
builds the same global order from the same seed, pads it by repeating its start to a multiple
of ``world_size`` units (or drops the remainder with ``drop_last``) and takes units
``rank, rank + world_size, ...``. A unit is one index for the random and class-aware samplers
and one whole P×K batch for ``PKSampler``, so each rank's batches keep the P×K structure.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
from torch.utils.data import Sampler

from leap_core.data.records import DatasetError

if TYPE_CHECKING:
    from leap_core.config import JobSpec


def _check(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise DatasetError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class ShardedSampler(Sampler[int], ABC):
    """Shared epoch, seed and sharding logic; subclasses return the global order as units."""

    def __init__(self, seed: int, rank: int, world_size: int, drop_last: bool) -> None:
        self.seed = _check("seed", seed, 0)
        self.world_size = _check("world_size", world_size, 1)
        self.rank = _check("rank", rank, 0)
        if self.rank >= self.world_size:
            raise DatasetError(f"rank must be below world_size ({world_size}), got {rank}")
        self.drop_last = drop_last
        self.epoch = 0
        self._cached: tuple[int, np.ndarray] | None = None
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order ``__iter__`` yields next."""
        self.epoch = _check("epoch", epoch, 0)

    def resume_at(self, position: int) -> None:
        """Make the next iteration start at ``position`` of the current epoch's order (a run
        resumed within an epoch continues where it stopped, without reading what it had
        already trained on); the iterations after it start at the beginning again.
        ``len()`` and :meth:`indices` stay the whole epoch's."""
        self._skip = _check("position", position, 0)

    @abstractmethod
    def _units(self, rng: np.random.Generator) -> np.ndarray:
        """The global order for one epoch, shape ``(units, unit_size)``."""

    def _shard(self, units: np.ndarray) -> np.ndarray:
        total = len(units)
        if self.drop_last:
            units = units[: total - total % self.world_size]
        elif total % self.world_size and total:
            pad = self.world_size - total % self.world_size
            repeats = np.resize(np.arange(total), pad)
            units = np.concatenate([units, units[repeats]])
        return units[self.rank :: self.world_size].reshape(-1)

    def indices(self) -> np.ndarray:
        """This rank's indices for the current epoch, as an int64 array (cached per epoch,
        since ``len()`` and iteration both need it)."""
        if self._cached is None or self._cached[0] != self.epoch:
            rng = np.random.default_rng([self.seed, self.epoch])
            order = self._shard(self._units(rng)).astype(np.int64)
            order.setflags(write=False)
            self._cached = (self.epoch, order)
        return self._cached[1]

    def __iter__(self) -> Iterator[int]:
        skip, self._skip = self._skip, 0
        return iter(self.indices()[skip:].tolist())

    def __len__(self) -> int:
        return int(self.indices().size)


class RandomSampler(ShardedSampler):
    """A seeded permutation of ``range(num_samples)`` per epoch."""

    def __init__(
        self,
        num_samples: int,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ) -> None:
        super().__init__(seed, rank, world_size, drop_last)
        self.num_samples = _check("num_samples", num_samples, 1)

    def _units(self, rng: np.random.Generator) -> np.ndarray:
        return rng.permutation(self.num_samples).reshape(-1, 1)

    def __len__(self) -> int:
        per, extra = divmod(self.num_samples, self.world_size)
        return per if self.drop_last or not extra else per + 1


def _class_index(labels: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample indices grouped by class, and each class's start and count in that grouping."""
    array = np.asarray(labels, dtype=np.int64)
    if array.ndim != 1 or array.size == 0:
        raise DatasetError(f"labels must be a non-empty 1-D sequence, got shape {array.shape}")
    if array.min() < 0:
        raise DatasetError(f"labels must be >= 0, got {int(array.min())}")
    grouped = np.argsort(array, kind="stable")
    counts = np.bincount(array)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    present = np.flatnonzero(counts)
    return grouped, starts[present], counts[present]


class ClassAwareSampler(ShardedSampler):
    """Class-aware re-sampling: pick a class uniformly, then one of its images uniformly.

    Every class is drawn equally often in expectation whatever its size, which is the classic
    re-balancing baseline for long-tailed data. An epoch has ``num_samples`` draws (default:
    the dataset size).
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        *,
        num_samples: int | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ) -> None:
        super().__init__(seed, rank, world_size, drop_last)
        self._grouped, self._starts, self._counts = _class_index(labels)
        size = len(self._grouped) if num_samples is None else num_samples
        self.num_samples = _check("num_samples", size, 1)

    def _units(self, rng: np.random.Generator) -> np.ndarray:
        classes = rng.integers(len(self._counts), size=self.num_samples)
        within = np.floor(rng.random(self.num_samples) * self._counts[classes]).astype(np.int64)
        return self._grouped[self._starts[classes] + within].reshape(-1, 1)


class PKSampler(ShardedSampler):
    """Identity-balanced batches: P identities × K images each, consecutive in the order.

    Per epoch every identity's images are shuffled and cut into chunks of K; the last chunk,
    and the only chunk of an identity with fewer than K images, is filled by drawing the
    identity's images with replacement. Batches then take one chunk from each of P distinct
    identities drawn at random among those with chunks left, until fewer than P remain (their
    chunks wait for the next epoch). Use with ``DataLoader(batch_size=P*K)``.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        *,
        identities: int,
        instances: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ) -> None:
        super().__init__(seed, rank, world_size, drop_last)
        self.identities = _check("identities", identities, 1)
        self.instances = _check("instances", instances, 1)
        self._grouped, self._starts, self._counts = _class_index(labels)
        if self.identities > len(self._counts):
            raise DatasetError(
                f"identities (P) must be at most the {len(self._counts)} classes present, "
                f"got {identities}"
            )

    @property
    def batch_size(self) -> int:
        """P × K, the DataLoader batch size that keeps batches aligned."""
        return self.identities * self.instances

    def _units(self, rng: np.random.Generator) -> np.ndarray:
        k = self.instances
        chunks: list[list[np.ndarray]] = []
        for start, count in zip(self._starts.tolist(), self._counts.tolist(), strict=True):
            members = self._grouped[start : start + count][rng.permutation(count)]
            fill = -count % k
            if fill:
                members = np.concatenate([members, rng.choice(members, size=fill)])
            chunks.append(list(members.reshape(-1, k)))
        available = [c for c in range(len(chunks)) if chunks[c]]
        batches: list[np.ndarray] = []
        while len(available) >= self.identities:
            picked = rng.choice(len(available), size=self.identities, replace=False)
            batch = [chunks[available[int(i)]].pop() for i in picked]
            batches.append(np.concatenate(batch))
            available = [c for c in available if chunks[c]]
        if not batches:
            return np.empty((0, self.batch_size), dtype=np.int64)
        return np.stack(batches)


def sampler_for(
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
