"""Which classes a rank owns, and the collectives over the ranks that share them.

Everything that grows with the number of classes (the head's rows, the feature cloud's
centres, memories and statistics) is held per shard. A one-process run is the trivial case:
one shard of all the classes, whose collectives return their input, so the criterion, the
feature cloud and the loss's autograd node are written once for every world size (as
insightface's Partial FC does) and never ask whether they are distributed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from leap_core import checks
from leap_core.distributed import collectives, gather


@dataclass(frozen=True)
class ClassShard:
    """Rank ``rank`` of ``world_size`` owns classes ``start .. stop - 1`` of ``num_classes``.

    The split is contiguous and as even as possible (the first ``num_classes % world_size``
    ranks hold one class more), so a class's owner is computable from its index alone and a
    checkpoint can be resharded to another world size by slicing. ``group`` is the
    ``torch.distributed`` process group of the ranks (``None``: the default group); it is
    never touched at world size 1.
    """

    num_classes: int
    rank: int = 0
    world_size: int = 1
    group: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        checks.positive_int("num_classes", self.num_classes)
        checks.positive_int("world_size", self.world_size)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank must be in [0, {self.world_size}), got {self.rank!r}")
        if self.world_size > self.num_classes:
            raise ValueError(
                f"world_size {self.world_size} exceeds num_classes {self.num_classes}: "
                f"every rank must own at least one class"
            )

    @property
    def start(self) -> int:
        base, extra = divmod(self.num_classes, self.world_size)
        return self.rank * base + min(self.rank, extra)

    @property
    def stop(self) -> int:
        base, extra = divmod(self.num_classes, self.world_size)
        return self.start + base + (1 if self.rank < extra else 0)

    @property
    def size(self) -> int:
        return self.stop - self.start

    @property
    def main(self) -> bool:
        """Whether this is rank 0, the one that reports and writes a checkpoint's common
        part and manifest."""
        return self.rank == 0

    def bounds(self) -> list[tuple[int, int]]:
        """``(start, stop)`` of every rank, in rank order."""
        return [
            (shard.start, shard.stop)
            for shard in (
                ClassShard(self.num_classes, rank, self.world_size)
                for rank in range(self.world_size)
            )
        ]

    def owned(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(positions, columns)``: the samples whose class this rank owns, and their
        classes as columns of this rank's rows."""
        local = labels - self.start
        positions = ((local >= 0) & (local < self.size)).nonzero().squeeze(1)
        return positions, local.index_select(0, positions)

    # ------------------------------------------------------------------ collectives
    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The element-wise sum over ranks (the tensor itself at world size 1)."""
        return tensor if self.world_size == 1 else collectives.all_reduce_sum(tensor, self.group)

    def max(self, tensor: torch.Tensor) -> torch.Tensor:
        """The element-wise maximum over ranks."""
        return tensor if self.world_size == 1 else collectives.all_reduce_max(tensor, self.group)

    def gather_batch(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every rank's batch in rank order, with the gradient flowing back to each rank's
        own rows (:func:`~leap_core.distributed.collectives.gather_batch`)."""
        return tensor if self.world_size == 1 else collectives.gather_batch(tensor, self.group)

    def gather_labels(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every rank's labels (or sample ids) in rank order, without gradient."""
        return tensor if self.world_size == 1 else collectives.gather_labels(tensor, self.group)

    def gather_classes(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every rank's per-class rows, concatenated in rank order, on every rank."""
        if self.world_size == 1:
            return tensor
        return collectives.all_gather_rows(tensor, self.group)

    def gather_to_main(self, tensor: torch.Tensor) -> torch.Tensor | None:
        """Every rank's rows concatenated on rank 0 (``None`` on the others)."""
        return tensor if self.world_size == 1 else gather.gather_rows(tensor, self.group)

    def gather_objects(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order, on every rank."""
        return [value] if self.world_size == 1 else gather.gather_objects(value, self.group)
