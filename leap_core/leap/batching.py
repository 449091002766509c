"""Vectorised per-class bookkeeping for a batch of labels.

The feature cloud updates state for every class present in a mini-batch. These helpers turn
a label vector into the quantities that make that update a handful of tensor operations,
whatever the number of classes: the distinct classes, each sample's group, and each sample's
rank among the samples of its class in batch order.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class BatchGroups(NamedTuple):
    """How a batch's samples group by class.

    Attributes:
        classes: ``(G,)`` the distinct labels, ascending.
        group: ``(B,)`` for each sample, the index of its class in ``classes``.
        sizes: ``(G,)`` samples of each class in the batch.
        rank: ``(B,)`` for each sample, how many earlier samples of the batch share its class
            (0 for the first sighting in the batch order).
    """

    classes: torch.Tensor
    group: torch.Tensor
    sizes: torch.Tensor
    rank: torch.Tensor


def group_by_class(labels: torch.Tensor) -> BatchGroups:
    """Group ``labels`` by class without a Python loop."""
    classes, group, sizes = torch.unique(labels, return_inverse=True, return_counts=True)
    order = torch.sort(group, stable=True).indices
    starts = torch.cumsum(sizes, 0) - sizes
    rank_sorted = torch.arange(labels.numel(), device=labels.device) - starts[group[order]]
    rank = torch.empty_like(rank_sorted)
    rank[order] = rank_sorted
    return BatchGroups(classes, group, sizes, rank)


def segment_positions(lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For segments of the given lengths laid end to end, each element's segment index and
    its position inside the segment, e.g. lengths ``[2, 3]`` give ``[0, 0, 1, 1, 1]`` and
    ``[0, 1, 0, 1, 2]``."""
    segment = torch.repeat_interleave(torch.arange(lengths.numel(), device=lengths.device), lengths)
    starts = torch.cumsum(lengths, 0) - lengths
    position = torch.arange(segment.numel(), device=lengths.device) - starts[segment]
    return segment, position
