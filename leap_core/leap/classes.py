"""Per-class bookkeeping of the feature cloud: class sizes, the head/tail split, memory
sizes, which classes can be measured, and the batch-level helpers the statistics need
(repeated images, permutations within groups). All of it over every class of the run, before
a shard takes its slice, so a split or a permutation is the same on every rank.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

#: Images a class needs before ``leave_one_out`` can measure its spread: with two, both are
#: at the same angle to their mean and to each other, whatever their true spread.
LEAVE_ONE_OUT_MIN_IMAGES = 3


def class_counts_tensor(class_counts: object) -> torch.Tensor:
    """Validate ``class_counts`` (a sequence, array or tensor of positive integers)."""
    if isinstance(class_counts, torch.Tensor):
        array = class_counts.detach().cpu().numpy()
    elif isinstance(class_counts, np.ndarray | Sequence):
        array = np.asarray(class_counts)
    else:
        raise ValueError(
            f"class_counts must be a sequence of positive integers, "
            f"got {type(class_counts).__name__}"
        )
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"class_counts must be a non-empty 1-D sequence, got shape {array.shape}")
    if array.dtype.kind not in "iuf" or (
        array.dtype.kind == "f" and not np.all(np.mod(array, 1) == 0)
    ):
        raise ValueError(f"class_counts must hold integers, got dtype {array.dtype}")
    bad = np.flatnonzero(array < 1)
    if bad.size:
        raise ValueError(
            f"class_counts must all be >= 1, got {array[bad[0]].item()!r} at index "
            f"{int(bad[0])} ({bad.size} class(es) below 1)"
        )
    return torch.as_tensor(array.astype(np.int64))


def head_mask(counts: torch.Tensor, head: object, threshold: float | None) -> torch.Tensor:
    """The head classes: ``head`` when given, else ``K_i > threshold``, else ``K_i >`` the
    median count."""
    if head is None:
        split = threshold if threshold is not None else float(counts.median())
        return counts > split
    mask = torch.as_tensor(
        np.asarray(head.detach().cpu() if isinstance(head, torch.Tensor) else head)
    )
    if mask.dtype != torch.bool or tuple(mask.shape) != tuple(counts.shape):
        raise ValueError(
            f"head must be {counts.numel()} booleans, got dtype {mask.dtype} and "
            f"shape {tuple(mask.shape)}"
        )
    return mask


def memory_capacities(counts: torch.Tensor, P: float) -> torch.Tensor:
    """``ceil(K_i × P)`` angles per class (eq. 5), at least one."""
    return torch.ceil(counts.to(torch.float64) * P - 1e-9).clamp(min=1).long()


def measurable_classes(
    counts: torch.Tensor, P: float, spread: Literal["leave_one_out", "paper"]
) -> torch.Tensor:
    """Classes whose spread the memory can measure: two slots at least, and under
    ``leave_one_out`` three images at least (module docstring)."""
    measurable = memory_capacities(counts, P) >= 2
    if spread == "leave_one_out":
        measurable &= counts >= LEAVE_ONE_OUT_MIN_IMAGES
    return measurable


def first_occurrences(sample_ids: torch.Tensor) -> torch.Tensor:
    """Positions of the first occurrence of each id, in batch order (an image repeated in a
    batch, as P×K does for a class with fewer than K images, is kept once)."""
    order = torch.sort(sample_ids, stable=True).indices
    ordered = sample_ids[order]
    first = torch.ones_like(ordered, dtype=torch.bool)
    first[1:] = ordered[1:] != ordered[:-1]
    return torch.sort(order[first]).values


def permute_within_groups(
    group: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A random permutation ``p`` of ``range(len(group))`` with ``group[p] == group``: every
    element moves to a random position of its own group (a group of one stays put)."""
    count = group.numel()
    keys = torch.rand(count, generator=generator, dtype=torch.float64, device=group.device)
    in_place = torch.sort(group, stable=True).indices  # by group, then position
    shuffled = torch.sort(group.to(torch.float64) * 2 + keys).indices  # by group, then at random
    permutation = torch.empty_like(in_place)
    permutation[in_place] = shuffled
    return permutation
