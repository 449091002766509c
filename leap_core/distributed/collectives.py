"""The collectives a class-sharded step needs, with the gradients training needs.

``torch.distributed`` itself is used throughout (gloo on CPU, NCCL on GPUs); the only thing
added is :func:`gather_batch`'s backward pass: every rank's loss depends on every rank's
embeddings through its own classes' logits, so the gradient of a rank's embeddings is the
sum over ranks of what each computed for them.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist


def _group_size(group: Any) -> tuple[int, int]:
    return dist.get_rank(group), dist.get_world_size(group)


class _GatherBatch(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, group: Any) -> torch.Tensor:
        rank, world = _group_size(group)
        parts = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(parts, tensor.contiguous(), group=group)
        ctx.group, ctx.rank, ctx.rows = group, rank, tensor.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        total = grad.contiguous().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM, group=ctx.group)
        start = ctx.rank * ctx.rows
        return total[start : start + ctx.rows], None


def gather_batch(tensor: torch.Tensor, group: Any = None) -> torch.Tensor:
    """Every rank's ``tensor`` (all of the same shape), concatenated in rank order; the
    backward pass sums the gradients every rank computed for this rank's rows."""
    return _GatherBatch.apply(tensor, group)


def gather_labels(labels: torch.Tensor, group: Any = None) -> torch.Tensor:
    """Every rank's labels in rank order (no gradient)."""
    world = dist.get_world_size(group)
    parts = [torch.empty_like(labels) for _ in range(world)]
    dist.all_gather(parts, labels.contiguous(), group=group)
    return torch.cat(parts)


def all_reduce_sum(tensor: torch.Tensor, group: Any = None) -> torch.Tensor:
    """The element-wise sum over ranks (a new tensor; ``tensor`` is left as it is)."""
    total = tensor.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM, group=group)
    return total


def all_reduce_max(tensor: torch.Tensor, group: Any = None) -> torch.Tensor:
    """The element-wise maximum over ranks (a new tensor)."""
    top = tensor.clone()
    dist.all_reduce(top, op=dist.ReduceOp.MAX, group=group)
    return top


def padded_rows(tensor: torch.Tensor, group: Any = None) -> tuple[torch.Tensor, list[int]]:
    """``tensor`` padded with zero rows to the largest row count of any rank, and every
    rank's row count: the equal shapes ``all_gather`` and ``gather`` need, and what to cut
    each received part back to."""
    world = dist.get_world_size(group)
    rows = torch.tensor([tensor.shape[0]], dtype=torch.long, device=tensor.device)
    counts = [torch.zeros_like(rows) for _ in range(world)]
    dist.all_gather(counts, rows, group=group)
    sizes = [int(count) for count in counts]
    padded = tensor.new_zeros((max(sizes), *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    return padded.contiguous(), sizes


def all_gather_rows(tensor: torch.Tensor, group: Any = None) -> torch.Tensor:
    """Every rank's rows concatenated in rank order, on every rank; the ranks' row counts
    may differ by any amount (the other dimensions must agree)."""
    padded, sizes = padded_rows(tensor, group)
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded, group=group)
    return torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)])
