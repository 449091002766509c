"""Collecting a class-sharded tensor on rank 0, and small values on every rank.

Rank 0 gathers the head of all classes for the end-of-run diagnostics (which embed and
rank against every class); checkpoints never gather (each rank writes its own classes).
Small per-rank values (a checkpoint's generation name, each rank's file sizes or error)
travel to every rank as objects.
"""

from __future__ import annotations

import io
from typing import Any

import torch
import torch.distributed as dist

from leap_core.distributed.collectives import padded_rows


def gather_rows(tensor: torch.Tensor, group: Any = None, dst: int = 0) -> torch.Tensor | None:
    """Every rank's ``tensor`` concatenated along dim 0 on rank ``dst`` (``None`` on the
    others). The ranks' row counts may differ; the other dimensions must agree."""
    padded, sizes = padded_rows(tensor, group)
    is_dst = dist.get_rank(group) == dst
    parts = [torch.empty_like(padded) for _ in sizes] if is_dst else None
    dist.gather(padded, parts, dst=dst, group=group)
    if parts is None:
        return None
    return torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)])


def gather_objects(value: Any, group: Any = None) -> list[Any]:
    """Every rank's ``value`` (tensors, numbers, strings, lists, dicts), in rank order, on
    every rank. Values travel as ``torch.save`` bytes: ``all_gather_object`` cannot pickle
    a tensor's storage in this PyTorch."""
    buffer = io.BytesIO()
    torch.save(value, buffer)
    blobs: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(blobs, buffer.getvalue(), group=group)
    return [torch.load(io.BytesIO(blob), weights_only=True) for blob in blobs]
