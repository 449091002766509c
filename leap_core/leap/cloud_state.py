"""A feature cloud's checkpoint in one layout for every world size.

A cloud of a shard holds its classes' rows; its checkpoint is written in the layout of a
cloud of all classes (every per-class tensor the concatenation of the ranks' slices in rank
order, the angle memories likewise), so a checkpoint resumes at any world size, one process
included, by slicing, and is read by ``leap eval`` unchanged. At world size 1 both functions
are the cloud's own ``state_dict`` / ``load_state_dict``.
"""

from __future__ import annotations

from typing import Any

import torch

from leap_core.leap.classes import memory_capacities
from leap_core.leap.cloud import FeatureCloud

#: Per-class entries of a cloud's state dict: one row per class, sliced by shard.
ROW_ENTRIES = (
    "class_counts",
    "centres",
    "seen",
    "memory.written",
    "memory.mean",
    "memory.variance",
)


def gather_cloud_state(cloud: FeatureCloud) -> tuple[dict[str, Any] | None, list[Any]]:
    """``(state, generators)``: on rank 0 the state of a cloud of all classes (``None``
    elsewhere), and every rank's draw generator state. Every rank must call it."""
    shard = cloud.shard
    local = cloud.state_dict()
    generators = shard.gather_objects(local["_extra_state"]["generator"])
    if shard.world_size == 1:
        return local, generators
    state: dict[str, Any] = {name: shard.gather_to_main(local[name]) for name in ROW_ENTRIES}
    angles = shard.gather_to_main(local["memory.angles"][:-1])  # minus the spare slot
    if angles is None:
        return None, generators
    state["memory.angles"] = torch.cat([angles, angles.new_zeros(1)])
    state["_extra_state"] = {**local["_extra_state"], "generator": generators[0]}
    return state, generators


def load_cloud_state(
    cloud: FeatureCloud, state: dict[str, Any], generators: list[Any] | None = None
) -> None:
    """Take ``cloud``'s classes out of the state of a cloud of all classes.

    ``generators`` (one per rank) restores each rank's draws exactly when the state was
    saved at this world size; otherwise draws shared by the sample continue the saved
    stream on every rank, and per-logit draws continue it on rank 0 and start afresh
    (``seed + rank``) on the others."""
    shard = cloud.shard
    counts = state["class_counts"]
    if counts.numel() != cloud.num_classes:
        raise ValueError(
            f"the checkpoint's feature cloud has {counts.numel()} classes, "
            f"the run {cloud.num_classes}"
        )
    capacity = memory_capacities(counts, cloud.P)
    offset = torch.cumsum(capacity, 0) - capacity
    first = int(offset[shard.start])
    last = int(offset[shard.stop - 1] + capacity[shard.stop - 1])
    angles = state["memory.angles"]
    local = {name: state[name][shard.start : shard.stop] for name in ROW_ENTRIES}
    local["memory.angles"] = torch.cat([angles[first:last], angles.new_zeros(1)])
    extra = dict(state["_extra_state"])
    if generators is not None and len(generators) == shard.world_size:
        extra["generator"] = generators[shard.rank]
    elif cloud.offset == "per_logit" and shard.rank > 0:
        extra["generator"] = None
    local["_extra_state"] = extra
    cloud.load_state_dict(local)
