"""Per-class FIFO memories of angles (eq. 5), in one flat buffer.

Class ``i`` owns the slots ``offset[i] .. offset[i] + capacity[i] - 1`` of a single tensor and
writes there round-robin, so writing a batch, reading a class's newest angles and computing
every touched class's statistics are each a few indexed tensor operations. A Python list per
class would be simpler but cannot serve 10^5-10^6 classes at training speed.
"""

from __future__ import annotations

import torch
from torch import nn

from leap_core.leap.batching import BatchGroups, segment_positions


class AngleMemory(nn.Module):
    """FIFO angle memories with per-class capacities and running statistics.

    Statistics (mean and unbiased variance of the stored angles) are recomputed exactly, in
    float64, for the classes a write touches; the others keep theirs. Incremental sums would
    drift over millions of writes, and the exact recomputation only reads the touched
    classes' slots.

    Args:
        capacities: ``(C,)`` number of angles each class keeps, all >= 1.
    """

    # Buffers, declared so type checkers know them as tensors (register_buffer sets them).
    capacity: torch.Tensor
    offset: torch.Tensor
    angles: torch.Tensor
    written: torch.Tensor
    mean: torch.Tensor
    variance: torch.Tensor

    def __init__(self, capacities: torch.Tensor) -> None:
        super().__init__()
        capacities = capacities.to(torch.long)
        self.register_buffer("capacity", capacities, persistent=False)
        self.register_buffer("offset", torch.cumsum(capacities, 0) - capacities, persistent=False)
        num_classes = capacities.numel()
        # One spare slot at the end absorbs writes that a batch overwrites itself.
        self.register_buffer("angles", torch.zeros(int(capacities.sum()) + 1, dtype=torch.float32))
        self.register_buffer("written", torch.zeros(num_classes, dtype=torch.long))
        self.register_buffer("mean", torch.full((num_classes,), float("nan"), dtype=torch.float64))
        self.register_buffer(
            "variance", torch.full((num_classes,), float("nan"), dtype=torch.float64)
        )

    @property
    def count(self) -> torch.Tensor:
        """``(C,)`` number of angles held by each class (at most its capacity)."""
        return torch.minimum(self.written, self.capacity)

    def nbytes(self) -> int:
        """Bytes held by the memory and its per-class bookkeeping."""
        tensors = [self.angles, self.written, self.mean, self.variance, self.capacity, self.offset]
        return sum(t.numel() * t.element_size() for t in tensors)

    def write(self, angles: torch.Tensor, labels: torch.Tensor, groups: BatchGroups) -> None:
        """Append ``angles`` (one per sample, in batch order) to their classes' memories.

        When a batch holds more samples of a class than the class can keep, only that class's
        newest ``capacity`` samples of the batch are written, as a FIFO fed one by one would
        end up holding.
        """
        capacity = self.capacity[labels]
        keep = groups.rank >= groups.sizes[groups.group] - capacity
        slot = self.offset[labels] + (self.written[labels] + groups.rank) % capacity
        # Samples that would be overwritten within this batch go to the spare last slot
        # instead of being filtered out: one indexed write, no data-dependent shapes.
        slot = torch.where(keep, slot, torch.full_like(slot, self.angles.numel() - 1))
        self.angles[slot] = angles.to(self.angles.dtype)
        self.written.index_add_(0, groups.classes, groups.sizes)
        self._refresh_statistics(groups.classes)

    def _refresh_statistics(self, classes: torch.Tensor) -> None:
        counts = torch.minimum(self.written[classes], self.capacity[classes])
        segment, position = segment_positions(counts)
        values = self.angles[self.offset[classes][segment] + position].to(torch.float64)
        totals = torch.zeros(classes.numel(), dtype=torch.float64, device=values.device)
        mean = totals.index_add(0, segment, values) / counts
        squares = totals.index_add(0, segment, (values - mean[segment]) ** 2)
        variance = torch.where(
            counts >= 2, squares / (counts - 1).clamp(min=1), torch.full_like(squares, float("nan"))
        )
        self.mean[classes] = mean
        self.variance[classes] = variance

    def stored(self, class_index: int) -> torch.Tensor:
        """The angles class ``class_index`` holds, oldest first (for inspection and tests)."""
        count = int(self.count[class_index])
        capacity = int(self.capacity[class_index])
        start = int(self.written[class_index]) - count
        slots = torch.arange(start, start + count, device=self.angles.device) % capacity
        return self.angles[int(self.offset[class_index]) + slots]
