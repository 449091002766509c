"""The per-class part of a checkpoint, apart from the rest.

What grows with the number of classes (the head's rows, their optimizer state, the feature
cloud's rows) is a checkpoint's *rows*; everything else (spec, backbone, counters, the
optimizer's other state, the cloud's generators) its *common* part. A single-file checkpoint
holds both joined in the one-process layout; a sharded one holds the common part once and
each rank's rows in that rank's file. A run resumes by taking the rows of the classes it
holds out of either, so the two forms and every world size read back the same way.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass
from typing import Any

import torch

from leap_core.leap.cloud_state import (
    concat_cloud_rows,
    join_cloud,
    slice_cloud_rows,
    split_cloud,
)


@dataclass
class Rows:
    """Classes ``start .. stop - 1`` of a checkpoint: the head's rows, the head's optimizer
    entries with one row per class (SGD's momentum, Adam's moments) and the feature cloud's
    rows (``None`` without a cloud)."""

    start: int
    stop: int
    head: torch.Tensor
    optimizer: dict[str, torch.Tensor]
    cloud: dict[str, torch.Tensor] | None

    def slice(self, start: int, stop: int, P: float | None) -> Rows:
        """Classes ``start .. stop - 1`` (absolute indices inside this range); ``P`` is the
        cloud's memory length, which lays out its angle slots (``None``: a run without a
        cloud, which takes none of the cloud's rows)."""
        if not self.start <= start <= stop <= self.stop:
            raise ValueError(f"classes {start}..{stop} are not inside {self.start}..{self.stop}")
        if (start, stop) == (self.start, self.stop):
            return self
        first, last = start - self.start, stop - self.start
        cloud = None
        if self.cloud is not None and P is not None:
            cloud = slice_cloud_rows(self.cloud, first, last, P)
        return Rows(
            start,
            stop,
            self.head[first:last],
            {name: value[first:last] for name, value in self.optimizer.items()},
            cloud,
        )

    @staticmethod
    def concat(parts: list[Rows]) -> Rows:
        """Consecutive ranges as one."""
        for before, after in itertools.pairwise(parts):
            if before.stop != after.start:
                raise ValueError(f"classes {before.stop}..{after.start} are missing")
        first = parts[0]
        clouds = [part.cloud for part in parts]
        return Rows(
            first.start,
            parts[-1].stop,
            torch.cat([part.head for part in parts]),
            {name: torch.cat([part.optimizer[name] for part in parts]) for name in first.optimizer},
            None
            if first.cloud is None
            else concat_cloud_rows([c for c in clouds if c is not None]),
        )

    def tensors(self) -> dict[str, Any]:
        return {"head": self.head, "optimizer": self.optimizer, "cloud": self.cloud}

    @classmethod
    def from_tensors(cls, start: int, stop: int, saved: dict[str, Any]) -> Rows:
        return cls(start, stop, saved["head"], dict(saved["optimizer"]), saved["cloud"])


def head_parameter(payload: dict[str, Any]) -> int:
    """The optimizer's index of the head's weight: recorded, or (checkpoints that did not
    record it) the last parameter, where the trainer puts the head."""
    if "head_parameter" in payload:
        return int(payload["head_parameter"])
    return max(index for group in payload["optimizer"]["param_groups"] for index in group["params"])


def is_row_entry(value: Any, rows: int) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == rows


def split_payload(payload: dict[str, Any], start: int = 0) -> tuple[dict[str, Any], Rows]:
    """``(common, rows)`` of a payload whose per-class tensors hold classes ``start ..``;
    the payload itself is left as it was."""
    head = payload["head"]["weight"]
    count = head.shape[0]
    index = head_parameter(payload)
    optimizer = dict(payload["optimizer"])
    state = dict(optimizer["state"])
    entries = dict(state.get(index, {}))
    row_entries = {
        name: entries.pop(name) for name in list(entries) if is_row_entry(entries[name], count)
    }
    if index in state:
        state[index] = entries
    optimizer["state"] = state
    common = {
        name: value for name, value in payload.items() if name not in ("head", "cloud", "optimizer")
    }
    common["optimizer"] = optimizer
    common["head_parameter"] = index
    cloud_rows = None
    common["cloud"] = None
    if payload.get("cloud") is not None:
        common["cloud"], cloud_rows = split_cloud(payload["cloud"])
    return common, Rows(start, start + count, head, row_entries, cloud_rows)


def join_payload(common: dict[str, Any], rows: Rows) -> dict[str, Any]:
    """The single-file payload of ``common`` and the rows of all its classes."""
    payload = dict(common)
    optimizer = copy.copy(common["optimizer"])
    state = dict(optimizer["state"])
    index = int(common["head_parameter"])
    if rows.optimizer or index in state:
        state[index] = {**state.get(index, {}), **rows.optimizer}
    optimizer["state"] = state
    payload["optimizer"] = optimizer
    payload["head"] = {"weight": rows.head}
    cloud = common.get("cloud")
    if cloud is not None and rows.cloud is not None:
        payload["cloud"] = join_cloud(cloud, rows.cloud)
    return payload
