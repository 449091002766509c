"""What Partial FC's class sampling buys on CPU ranks: the step time and the resident peak of
the class-sharded LEAP-CF head at sample rate r = 0.1 against r = 1, on two gloo ranks.

Each configuration runs in fresh processes (two ranks on loopback, one thread each): the
head (CosFace, D = 512) and its Adam moments, the feature cloud (full mode, one offset per
logit; a tenth of the classes with 50 images, the rest with 5) and one optimizer step per
iteration on a global batch of 256. Printed per configuration: the median step time (the
slower rank's, after a warm-up step), the resident set of each rank after setup and its
peak over the steps (``ru_maxrss``), and, side by side, r = 0.1 / r = 1. The two rates
alternate over ``--rounds`` so drifting load hits both alike.

The sampled step still computes the dense gradient of the head's weight (rows left out get
zeros, as insightface's ``partial_fc_v2``), so the saving is in the ``(batch, classes)``
buffers: logits, their gradient and the cloud's offsets, a tenth of their size at r = 0.1.

    python benchmarks/partial_fc.py [--classes 1000000] [--steps 4] [--rounds 1]
    python benchmarks/partial_fc.py --device cuda    # one process on one GPU

With ``--device cuda`` the whole head runs in one process on the GPU, and the memory
columns are the device's: allocated after setup and the step's peak
(``torch.cuda.max_memory_allocated``).

First it prints the memory a rank allocates, per world size (1, 2, 8), class count (1 M and
10 M) and sample rate: the head's weight, its gradient and Adam moments and the cloud's
tensors, which
sampling does not change, and the step's ``(batch, classes)`` buffers (the loss's reused
workspace and the cosines), which it does. Both are measured on a shard of
``--probe-classes`` (tensor bytes) and scaled linearly in the classes a rank holds or keeps,
which is how every one of them grows.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from leap_core.distributed import ClassShard
from leap_core.heads import ClassSampler, CosFaceHead
from leap_core.leap import FeatureCloud
from leap_core.losses import LEAPLoss

DIM, BATCH, WORLD = 512, 256, 2


def resident_mib() -> float:
    """This process's resident set now, from /proc (MiB)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def steps_of(shard: ClassShard, rate: float, steps: int, device: torch.device) -> dict[str, object]:
    """Build the shard's head, cloud and optimizer on ``device`` and time ``steps`` steps
    (after a warm-up one); memory in MiB, resident on a CPU, allocated on a GPU."""
    cuda = device.type == "cuda"
    classes = shard.num_classes
    counts = torch.full((classes,), 5, dtype=torch.long)
    counts[: classes // 10] = 50
    head = CosFaceHead(DIM, shard.size).to(device)
    cloud = FeatureCloud(counts, DIM, shard=shard, mode="full").to(device)
    sampler = ClassSampler(rate, shard, seed=0) if rate < 1 else None
    criterion = LEAPLoss(head, cloud, shard=shard, sampler=sampler)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(shard.rank)
    per_rank = BATCH // shard.world_size
    after_setup = torch.cuda.memory_allocated(device) / 2**20 if cuda else resident_mib()
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for step in range(steps + 1):  # the first step warms the caches and the buffers
        labels = torch.randint(0, classes, (per_rank,), generator=generator).to(device)
        features = torch.randn(per_rank, DIM, generator=generator).to(device).requires_grad_()
        if shard.world_size > 1:
            dist.barrier()
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        criterion(features, labels, epoch=0, step=step).backward()
        optimizer.step()
        if cuda:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - started)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else peak_mib()
    return {"times": times[1:], "setup": after_setup, "peak": peak}


def rank_main(rank: int, port: int, out: str, classes: int, rate: float, steps: int) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )
    try:
        measured = steps_of(ClassShard(classes, rank, WORLD), rate, steps, torch.device("cpu"))
        torch.save(measured, Path(out) / f"{rank}.pt")
    finally:
        dist.destroy_process_group()


def run(classes: int, rate: float, steps: int, device: torch.device) -> dict[str, float]:
    if device.type == "cuda":
        one = steps_of(ClassShard(classes), rate, steps, device)
        times = one["times"]
        assert isinstance(times, list)
        return {"step": statistics.median(times), "setup": one["setup"], "peak": one["peak"]}
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as out:
        mp.spawn(rank_main, args=(port, out, classes, rate, steps), nprocs=WORLD)
        ranks = [torch.load(Path(out) / f"{r}.pt") for r in range(WORLD)]
    per_step = [max(pair) for pair in zip(*(r["times"] for r in ranks), strict=True)]
    return {
        "step": statistics.median(per_step),
        "setup": max(r["setup"] for r in ranks),
        "peak": max(r["peak"] for r in ranks),
    }


def allocated_per_class(classes: int) -> tuple[float, float]:
    """``(state, step)``: bytes a rank allocates per class it holds (head weight, its
    gradient, two Adam moments, the cloud's tensors) and, in a step, per (global-batch
    sample, kept class) (the workspace's buffers and the cosines), measured on one shard of
    ``classes``."""
    shard = ClassShard(classes)
    counts = torch.full((classes,), 5, dtype=torch.long)
    counts[: classes // 10] = 50
    head = CosFaceHead(DIM, classes)
    cloud = FeatureCloud(counts, DIM, shard=shard, mode="full")
    tensors = [*head.parameters(), *cloud.buffers()]
    # The weight's gradient is dense at every rate (rows left out get zeros), as are its
    # two Adam moments.
    state = sum(t.numel() * t.element_size() for t in tensors) + 3 * head.weight.nbytes
    criterion = LEAPLoss(head, cloud, shard=shard)
    generator = torch.Generator().manual_seed(0)
    for step in range(2):  # the second step finds every buffer in the pool
        labels = torch.randint(0, classes, (BATCH,), generator=generator)
        features = torch.randn(BATCH, DIM, generator=generator).requires_grad_()
        criterion(features, labels, epoch=0, step=step).backward()
    step_bytes = criterion._workspace.nbytes() + BATCH * classes * 4  # + the cosines
    return state / classes, step_bytes / (BATCH * classes)


def allocated_table(probe: int) -> None:
    per_class, per_logit = allocated_per_class(probe)
    print(
        f"\nallocated per rank, GiB (measured on {probe:,} classes, scaled): head, gradient, "
        f"Adam and cloud, and the step's buffers at a global batch of {BATCH}"
    )
    print(f"{'classes':>11} {'world':>6} {'state':>8} {'step r=1':>9} {'step r=0.1':>11}")
    for classes in (1_000_000, 10_000_000):
        for world in (1, 2, 8):
            held = ClassShard(classes, 0, world).size
            sampled = max(1, int(0.1 * held))
            print(
                f"{classes:>11,} {world:>6} {per_class * held / 2**30:>8.2f} "
                f"{per_logit * BATCH * held / 2**30:>9.2f} "
                f"{per_logit * BATCH * sampled / 2**30:>11.2f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=1_000_000)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu (two gloo ranks) or cuda")
    parser.add_argument("--probe-classes", type=int, default=20_000)
    args = parser.parse_args()
    device = torch.device(args.device)
    where = (
        f"one process on {torch.cuda.get_device_name(device)}"
        if device.type == "cuda"
        else f"{WORLD} gloo ranks x 1 thread"
    )
    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; "
        f"C = {args.classes:,}, D = {DIM}, global batch {BATCH}, {where}"
    )
    allocated_table(args.probe_classes)
    print(f"\nmeasured: {args.steps} steps after a warm-up one, C = {args.classes:,}")
    results: dict[float, list[dict[str, float]]] = {1.0: [], 0.1: []}
    for _ in range(args.rounds):
        for rate in results:
            results[rate].append(run(args.classes, rate, args.steps, device))
    memory = "allocated" if device.type == "cuda" else "RSS"
    print(f"{'r':>5} {'step s':>9} {memory + ' after setup MiB':>26} {memory + ' peak MiB':>19}")
    summary = {}
    for rate, runs in results.items():
        summary[rate] = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        row = summary[rate]
        print(f"{rate:>5} {row['step']:>9.3f} {row['setup']:>26.0f} {row['peak']:>19.0f}")
    dense, sampled = summary[1.0], summary[0.1]
    print(
        f"r = 0.1 / r = 1: step time {sampled['step'] / dense['step']:.3f}, peak above setup "
        f"{(sampled['peak'] - sampled['setup']) / max(dense['peak'] - dense['setup'], 1e-9):.3f}"
    )


if __name__ == "__main__":
    main()
