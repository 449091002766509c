"""A feature cloud's checkpoint, split into what every class has and what the cloud has once.

The per-class part (the *rows*: counts, centres, flags, the angle memories and their
statistics) is what grows with the number of classes; a sharded run writes each rank's rows
to its own file and a resumed run reads back the rows of the classes it holds, at any world
size. The rest (seed, call counter, readings, draw generators) is the cloud's own. A cloud's
``state_dict`` is :func:`join_cloud` of the two, which is also the single-file layout: every
per-class tensor one row per class, the angle memories one flat tensor in class order with
one spare slot at the end.
"""

from __future__ import annotations

from typing import Any

import torch

from leap_core.leap.classes import memory_capacities
from leap_core.leap.cloud import FeatureCloud

#: Per-class entries of a cloud's state dict: one row per class.
ROW_ENTRIES = (
    "class_counts",
    "centres",
    "seen",
    "memory.written",
    "memory.mean",
    "memory.variance",
)
#: The flat angle memories: class ``i`` owns ``ceil(K_i × P)`` consecutive slots.
ANGLES = "memory.angles"


def split_cloud(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(common, rows)`` of a cloud's ``state_dict`` (the spare angle slot dropped)."""
    rows = {name: state[name] for name in ROW_ENTRIES}
    rows[ANGLES] = state[ANGLES][:-1]
    common = {name: value for name, value in state.items() if name not in rows}
    return common, rows


def join_cloud(common: dict[str, Any], rows: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The ``state_dict`` of a cloud holding exactly ``rows``' classes."""
    angles = rows[ANGLES]
    return {**common, **rows, ANGLES: torch.cat([angles, angles.new_zeros(1)])}


def slice_cloud_rows(
    rows: dict[str, torch.Tensor], start: int, stop: int, P: float
) -> dict[str, torch.Tensor]:
    """Classes ``start .. stop - 1`` of ``rows`` (positions within them); the angle slots
    follow from the classes' sizes and the memory length ``P``, as the cloud lays them out."""
    capacity = memory_capacities(rows["class_counts"], P)
    first = int(capacity[:start].sum())
    last = first + int(capacity[start:stop].sum())
    sliced = {name: rows[name][start:stop] for name in ROW_ENTRIES}
    sliced[ANGLES] = rows[ANGLES][first:last]
    return sliced


def concat_cloud_rows(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Consecutive classes' rows as one."""
    return {name: torch.cat([part[name] for part in parts]) for name in (*ROW_ENTRIES, ANGLES)}


def load_cloud_rows(
    cloud: FeatureCloud,
    common: dict[str, Any],
    rows: dict[str, torch.Tensor],
    generator: Any | None,
) -> None:
    """Restore ``cloud`` from its classes' ``rows`` and the cloud's ``common`` part.

    ``generator`` is this rank's saved draw generator when the checkpoint was written at this
    world size (the draws continue exactly). Otherwise (``None``) draws shared by the sample
    continue the saved stream on every rank, and per-logit draws continue it on rank 0 and
    start afresh (``seed + rank``) on the others."""
    counts = rows["class_counts"]
    if counts.numel() != cloud.shard.size or not torch.equal(
        counts.to(cloud.class_counts.device), cloud.class_counts
    ):
        raise ValueError(
            f"the checkpoint's feature cloud holds other classes than the run's: "
            f"{counts.numel()} rows where the run has {cloud.shard.size}, or other class sizes"
        )
    extra = dict(common["_extra_state"])
    if generator is not None:
        extra["generator"] = generator
    elif cloud.offset == "per_logit" and cloud.shard.rank > 0:
        extra["generator"] = None
    cloud.load_state_dict(join_cloud({**common, "_extra_state": extra}, rows))
