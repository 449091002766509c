"""The trainer's world: the processes of one run, and what the trainer itself needs of them.

``torchrun`` (or any launcher that initialises the default process group) starts one process
per device; each builds the same :class:`~leap_core.training.trainer.Trainer`, which then
shards what grows with the number of classes (head rows, the feature cloud) by rank and
wraps the backbone in ``DistributedDataParallel``. Rank 0 alone reports (progress, MLflow);
every rank writes its own classes' share of a checkpoint
(:mod:`leap_core.training.checkpoint_shards`).
A one-process run is a world of one: the helpers below then return what they are given.

Gradients of the backbone are **summed** over ranks, not averaged: each rank's loss is the
mean over the whole gathered batch, and the backward pass of the gathered embeddings already
gives each rank its share of that loss's gradient, so the sum is the gradient of one
process training on the global batch.

(No ``from __future__ import annotations`` here: DistributedDataParallel checks the
communication hook's annotations as objects.)
"""

import gc
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from leap_core.distributed.shard import ClassShard

#: How long a rank waits in a collective: the other ranks wait while rank 0 alone
#: evaluates, embeds the diagnostic images or retries a tracking or database write, which at
#: face scale takes longer than NCCL's default 10 minutes.
COLLECTIVE_TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in the run."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def main(self) -> bool:
        return self.rank == 0


def current_ranks() -> Ranks | None:
    """The default process group's ranks, or ``None`` for a one-process run."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return None
    return Ranks(
        dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    )


def init_from_environment(device_type: str) -> Ranks | None:
    """Join the process group a launcher described in the environment (``WORLD_SIZE``,
    ``RANK``, ``MASTER_ADDR``, ...: what ``torchrun`` sets); NCCL for CUDA, gloo otherwise.
    Returns ``None`` when the environment describes no group of more than one process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    if not dist.is_initialized():
        dist.init_process_group(
            "nccl" if device_type == "cuda" else "gloo", timeout=COLLECTIVE_TIMEOUT
        )
    return current_ranks()


def leave_process_group() -> None:
    """Wait for every rank at the end of a finished run, then tear the process group down.

    A rank that simply exits while its peers still hold the connection can be aborted at
    interpreter exit by the communication library's own threads (and its exit code then
    fails a run whose every step succeeded); leaving together, then destroying the group,
    ends each process cleanly. ``destroy_process_group`` only drops the library's own
    references: a trainer the caller has let go of but that sits in a reference cycle (an
    exception's traceback, hooks that point back at it) keeps its ``DistributedDataParallel``
    and, through it, the group alive until interpreter exit, where tearing the group down
    can abort the process the same way. Collecting that garbage first frees them while the
    interpreter is whole. A one-process run has nothing to leave."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()


def sum_gradients(group: Any, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """A ``DistributedDataParallel`` communication hook: all-reduce without averaging."""
    work = dist.all_reduce(bucket.buffer(), group=group, async_op=True)
    assert work is not None
    return work.get_future().then(lambda future: future.value()[0])


def any_rank(flags: list[bool], shard: ClassShard, device: torch.device) -> list[bool]:
    """Whether each flag is true on some rank (a stop asked on rank 0 stops every rank, a
    SIGTERM to one rank checkpoints all of them), in one collective."""
    if shard.world_size == 1:
        return list(flags)
    raised = shard.max(torch.tensor([1.0 if flag else 0.0 for flag in flags], device=device))
    return [bool(value) for value in raised.tolist()]
