"""The feature cloud of a shard of the classes.

A rank keeps the centres, angle memories and statistics of its own classes only, so the
cloud's memory per rank falls as one over the world size. It sees every rank's embeddings
(the gathered batch) and folds in those of its classes, in batch order, which is exactly
what a single-process cloud does with the whole batch. The quantities that span all classes
(eq. 6's head means, eq. 9's weighted mean, the head/tail reports) are sums over the shards
(all-reduced). A sample's offset standard deviation comes from its class's owner, summed
over ranks so every rank knows it.

Offsets drawn once per logit are drawn by each rank for its own columns, from a generator
seeded with ``seed + rank``; offsets shared by the whole sample (``per_sample``,
``target_only``) are drawn with ``seed`` on every rank, the same numbers everywhere, as
their reading requires.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from leap_core.distributed.collectives import all_reduce_sum
from leap_core.distributed.gather import gather_objects, gather_rows
from leap_core.distributed.shard import ClassShard
from leap_core.leap.cloud import FeatureCloud, _head_mask, memory_capacities

#: Per-class entries of a FeatureCloud's state dict: one row per class, sliced by shard.
ROW_ENTRIES = (
    "class_counts",
    "centres",
    "seen",
    "memory.written",
    "memory.mean",
    "memory.variance",
)


class ShardedFeatureCloud(nn.Module):
    """A :class:`~leap_core.leap.FeatureCloud` over the classes of ``shard``.

    Args:
        class_counts: ``K_i`` of **all** classes (length ``C``); the shard keeps its slice.
        embedding_dim: feature size ``D``.
        shard: the classes this rank owns.
        group: the process group (``None``: the default group).
        head: ``(C,)`` booleans, the run's head classes, or ``None`` to use ``threshold``
            (or the median count) on all classes, as the single-process cloud does.
        **settings: every other :class:`FeatureCloud` argument (``mode``, ``threshold``,
            ``P``, ``gamma``, ``offset``, ``seed``, ...).
    """

    def __init__(
        self,
        class_counts: Sequence[int] | np.ndarray | torch.Tensor,
        embedding_dim: int,
        shard: ClassShard,
        group: Any = None,
        head: Sequence[bool] | np.ndarray | torch.Tensor | None = None,
        **settings: Any,
    ) -> None:
        super().__init__()
        counts = torch.as_tensor(np.asarray(class_counts)).long()
        if counts.numel() != shard.num_classes:
            raise ValueError(
                f"class_counts has {counts.numel()} classes but the shard splits "
                f"{shard.num_classes}"
            )
        # The split, and its sanity checks, are those of the single-process cloud on all
        # classes; only then is it sliced.
        mode = settings.get("mode", "full")
        is_head = _head_mask(counts, head, settings.get("threshold"))
        if mode in ("vanilla", "constant") and (bool(is_head.all()) or not bool(is_head.any())):
            missing = "tail" if bool(is_head.all()) else "head"
            raise ValueError(f"the head/tail split leaves no {missing} class")
        seed = self.base_seed = int(settings.pop("seed", 0))
        self.per_rank_draws = settings.get("offset", "per_logit") == "per_logit"
        if self.per_rank_draws:
            seed += shard.rank
        self.shard = shard
        self.group = group
        self.local = FeatureCloud(
            counts[shard.start : shard.stop],
            embedding_dim,
            head=is_head[shard.start : shard.stop],
            seed=seed,
            reduce=self._sum,
            **settings,
        )

    def _sum(self, values: torch.Tensor) -> torch.Tensor:
        return all_reduce_sum(values, self.group)

    @property
    def num_classes(self) -> int:
        return self.shard.num_classes

    @property
    def embedding_dim(self) -> int:
        return self.local.embedding_dim

    @property
    def cloud_samples(self) -> int:
        return self.local.cloud_samples

    @property
    def shifts_other_logits(self) -> bool:
        return self.local.shifts_other_logits

    def owned(self, labels: torch.Tensor) -> torch.Tensor:
        """Which of the (global) ``labels`` belong to this rank's classes."""
        return (labels >= self.shard.start) & (labels < self.shard.stop)

    @torch.no_grad()
    def observe(
        self, features: torch.Tensor, labels: torch.Tensor, sample_ids: torch.Tensor | None = None
    ) -> bool:
        """Fold the gathered batch into this rank's classes; every rank calls it each step."""
        mine = self.owned(labels).nonzero().squeeze(1)
        return self.local.observe(
            features.index_select(0, mine),
            labels.index_select(0, mine) - self.shard.start,
            None if sample_ids is None else sample_ids.index_select(0, mine),
        )

    def cloud_variance(self) -> torch.Tensor:
        """``(C_local,)`` variance of this rank's classes' offsets (all-reduced targets)."""
        return self.local.cloud_variance()

    def sample_variance(self, labels: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
        """Each gathered sample's offset variance, known to every rank."""
        owned = self.owned(labels)
        local = (labels - self.shard.start).clamp(0, self.shard.size - 1)
        mine = torch.where(owned, variance[local], torch.zeros_like(variance[local]))
        return all_reduce_sum(mine, self.group)

    @torch.no_grad()
    def draw_rows(
        self,
        per_sample_variance: torch.Tensor,
        buffer: Callable[[tuple[int, ...]], torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(rows, offsets)`` for the gathered batch: the samples with a cloud, and their
        offsets for this rank's columns (``(n, C_local)``) or for the whole sample
        (``(n, 1)``)."""
        positions = torch.arange(per_sample_variance.numel(), device=per_sample_variance.device)
        return self.local.draw_rows(positions, per_sample_variance, buffer=buffer)

    def repeat_index(self, per_sample_variance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        positions = torch.arange(per_sample_variance.numel(), device=per_sample_variance.device)
        return self.local.repeat_index(positions, per_sample_variance)

    def head_statistics(self) -> tuple[float, float]:
        return self.local.head_statistics()

    def angular_variance_by_group(self) -> tuple[float, float]:
        return self.local.angular_variance_by_group()

    @property
    def unmeasurable_classes(self) -> int:
        """Over all ranks."""
        count = torch.tensor(
            [float(self.local.unmeasurable_classes)], device=self.local.centres.device
        )
        return int(all_reduce_sum(count, self.group).item())

    @property
    def single_slot_classes(self) -> int:
        """Over all ranks."""
        count = torch.tensor(
            [float(self.local.single_slot_classes)], device=self.local.centres.device
        )
        return int(all_reduce_sum(count, self.group).item())

    # ----------------------------------------------------------------- checkpoints
    def gather_state(self) -> tuple[dict[str, Any] | None, list[Any]]:
        """``(state, generators)``: on rank 0 the single-process :class:`FeatureCloud` state
        of all classes (``None`` elsewhere), and every rank's generator state. Every rank
        must call it."""
        local = self.local.state_dict()
        state: dict[str, Any] = {}
        for name in ROW_ENTRIES:
            state[name] = gather_rows(local[name], self.group)
        angles = gather_rows(local["memory.angles"][:-1], self.group)  # minus the spare slot
        extra = local["_extra_state"]
        generators = gather_objects(extra["generator"], self.group)
        if angles is None:
            return None, generators
        state["memory.angles"] = torch.cat([angles, angles.new_zeros(1)])
        state["_extra_state"] = {**extra, "seed": self.base_seed, "generator": generators[0]}
        return state, generators

    def load_full_state(self, state: dict[str, Any], generators: list[Any] | None = None) -> None:
        """Take this rank's classes out of a single-process cloud state of all classes.

        ``generators`` (one per rank) restores each rank's draws exactly when the state was
        saved at this world size; otherwise draws shared by the sample continue the saved
        stream on every rank, and per-logit draws continue it on rank 0 and start afresh
        (``seed + rank``) on the others."""
        start, stop = self.shard.start, self.shard.stop
        counts = state["class_counts"]
        if counts.numel() != self.num_classes:
            raise ValueError(
                f"the checkpoint's feature cloud has {counts.numel()} classes, "
                f"the run {self.num_classes}"
            )
        capacity = memory_capacities(counts, self.local.P)
        offset = torch.cumsum(capacity, 0) - capacity
        first = int(offset[start])
        last = int(offset[stop - 1] + capacity[stop - 1])
        angles = state["memory.angles"]
        local = {name: state[name][start:stop] for name in ROW_ENTRIES}
        local["memory.angles"] = torch.cat([angles[first:last], angles.new_zeros(1)])
        extra = dict(state["_extra_state"])
        extra["seed"] = self.local.seed
        if generators is not None and len(generators) == self.shard.world_size:
            extra["generator"] = generators[self.shard.rank]
        elif self.per_rank_draws and self.shard.rank > 0:
            extra["generator"] = None
        local["_extra_state"] = extra
        self.local.load_state_dict(local)

    def classes_without_statistics(self) -> int:
        """Over all ranks."""
        count = torch.tensor(
            [float(self.local.classes_without_statistics())], device=self.local.centres.device
        )
        return int(all_reduce_sum(count, self.group).item())
