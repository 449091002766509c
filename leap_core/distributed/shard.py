"""Which classes a rank owns."""

from __future__ import annotations

from dataclasses import dataclass

from leap_core import checks


@dataclass(frozen=True)
class ClassShard:
    """Rank ``rank`` of ``world_size`` owns classes ``start .. stop - 1`` of ``num_classes``.

    The split is contiguous and as even as possible (the first ``num_classes % world_size``
    ranks hold one class more), so a class's owner is computable from its index alone and a
    checkpoint can be resharded to another world size by slicing.
    """

    num_classes: int
    rank: int
    world_size: int

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

    def bounds(self) -> list[tuple[int, int]]:
        """``(start, stop)`` of every rank, in rank order."""
        return [
            (shard.start, shard.stop)
            for shard in (
                ClassShard(self.num_classes, rank, self.world_size)
                for rank in range(self.world_size)
            )
        ]
