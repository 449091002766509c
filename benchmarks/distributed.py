"""What class sharding buys: head + feature-cloud memory per rank, and the step time of the
sharded LEAP head on 1 and 2 CPU ranks (gloo), side by side in one run.

1. Memory per rank at C = 1,000,000 classes, D = 512 (a tenth of the classes with 50 images,
   the rest with 5, P = 1): the head's weight, its Adam moments, the cloud's centres, angle
   memories and per-class statistics, for world sizes 1, 2 and 8. Each figure is the bytes
   of the tensors rank 0 actually allocates (built here, one shard at a time); the column
   beside it is the world-size-1 figure divided by N.
2. Step time (forward + backward of head + loss + statistics + cloud, full mode, one offset
   per logit) at C = 100,000, a global batch of 256, D = 512: one process against two ranks
   on gloo, each on one thread, wall clock, medians of alternating repeats.

    python benchmarks/distributed.py [--classes 1000000] [--step-classes 100000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from leap_core.distributed import ClassShard
from leap_core.heads import CosFaceHead
from leap_core.leap import FeatureCloud
from leap_core.losses import LEAPLoss

DIM, BATCH = 512, 256


def long_tailed_counts(num_classes: int) -> torch.Tensor:
    counts = torch.full((num_classes,), 5, dtype=torch.long)
    counts[: max(1, num_classes // 10)] = 50
    return counts


def tensor_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


def memory_per_rank(num_classes: int, world_size: int) -> int:
    """Bytes rank 0 holds for the head (weight + two Adam moments) and its cloud shard."""
    shard = ClassShard(num_classes, 0, world_size)
    head = CosFaceHead(DIM, shard.size)
    cloud = FeatureCloud(long_tailed_counts(num_classes), DIM, shard=shard, mode="full")
    head_bytes = tensor_bytes(head) * 3  # weight, exp_avg, exp_avg_sq
    total = head_bytes + tensor_bytes(cloud)
    del head, cloud
    return total


def features_for(labels: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    generator = torch.Generator().manual_seed(int(labels.sum()))
    noise = torch.randn(labels.numel(), DIM, generator=generator) * 0.3
    return F.normalize(directions[labels]) + noise / DIM**0.5


def step_times(rank: int, world_size: int, num_classes: int, repeats: int) -> list[float]:
    """Median-ready step times of this rank (world size 1: one process, one shard)."""
    torch.set_num_threads(1)
    counts = long_tailed_counts(num_classes)
    generator = torch.Generator().manual_seed(0)
    directions = torch.randn(num_classes, DIM, generator=generator)
    labels = torch.randint(0, num_classes, (BATCH,), generator=generator)
    per_rank = BATCH // world_size
    mine = labels[rank * per_rank : (rank + 1) * per_rank]
    shard = ClassShard(num_classes, rank, world_size)
    cloud = FeatureCloud(counts, DIM, shard=shard, mode="full")
    criterion = LEAPLoss(CosFaceHead(DIM, shard.size), cloud, shard=shard)
    batch = features_for(mine, directions)
    times = []
    for _ in range(repeats + 1):  # the first step warms caches and fills the memories
        features = batch.clone().requires_grad_()
        if world_size > 1:
            dist.barrier()
        started = time.perf_counter()
        criterion(features, mine, 0).backward()
        times.append(time.perf_counter() - started)
    return times[1:]


def _rank(rank: int, world_size: int, port: int, out: str, classes: int, repeats: int) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    try:
        times = step_times(rank, world_size, classes, repeats)
        torch.save(times, Path(out) / f"{rank}.pt")
    finally:
        dist.destroy_process_group()


def two_rank_times(classes: int, repeats: int) -> list[float]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as out:
        mp.spawn(_rank, args=(2, port, out, classes, repeats), nprocs=2)
        per_rank = [torch.load(Path(out) / f"{r}.pt") for r in range(2)]
    return [max(pair) for pair in zip(*per_rank, strict=True)]  # a step ends when both do


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=1_000_000)
    parser.add_argument("--step-classes", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")

    print(f"\nhead + cloud memory of rank 0, C = {args.classes:,}, D = {DIM}")
    print(f"{'world size':>10} {'MiB':>10} {'1/N of N=1':>11} {'ratio':>7}")
    single = None
    for world_size in (1, 2, 8):
        held = memory_per_rank(args.classes, world_size)
        single = single or held
        print(
            f"{world_size:>10} {held / 2**20:>10.1f} {single / world_size / 2**20:>11.1f} "
            f"{held / (single / world_size):>7.3f}"
        )

    print(f"\nstep time, C = {args.step_classes:,}, global batch {BATCH}, one thread per rank")
    one: list[float] = []
    two: list[float] = []
    for _ in range(args.rounds):  # alternate so drifting load hits both alike
        one += step_times(0, 1, args.step_classes, args.repeats)
        two += two_rank_times(args.step_classes, args.repeats)
    a, b = statistics.median(one), statistics.median(two)
    print(f"1 process: {a * 1e3:.0f} ms   2 ranks: {b * 1e3:.0f} ms   2 ranks / 1: {b / a:.3f}")


if __name__ == "__main__":
    main()
