"""What writing a checkpoint costs each rank: the peak resident memory of every rank while
a class-sharded state is saved, against 1/N of the whole state, for the sharded checkpoint
the trainer writes and for the gathered single file it wrote before.

Two gloo ranks each build their shard of a CosFace head (D = 512, Adam after one step) and
of the full-mode feature cloud, then save them twice, in one run:

- ``sharded``: what ``Trainer.save`` does: the rank's payload split into common and rows
  (:func:`~leap_core.training.checkpoint_rows.split_payload`) and each rank's rows written
  to its own file (:func:`~leap_core.training.checkpoint_shards.write_shards`);
- ``gathered``: every rank's rows gathered on rank 0 (``ClassShard.gather_to_main``) and
  written as one file (:func:`~leap_core.training.checkpoint.save_checkpoint`), the layout
  ``leap checkpoint consolidate`` writes.

Printed per rank and per way: the resident set before the save, its peak during it
(sampled every 5 ms), the rise over 1/N of the whole state, and the bytes written.

    python benchmarks/checkpoint_memory.py [--classes 500000] [--ways sharded,gathered]

At 1,000,000 classes the two ranks and rank 0's gathered copy need more than this 24 GiB
machine has (``--ways sharded`` alone fits); the figures grow linearly in the classes.
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from leap_core.distributed import ClassShard
from leap_core.heads import CosFaceHead
from leap_core.leap import FeatureCloud
from leap_core.losses import LEAPLoss
from leap_core.training import checkpoint as ckpt
from leap_core.training.checkpoint_rows import Rows, join_payload, split_payload
from leap_core.training.checkpoint_shards import write_shards

DIM, BATCH, WORLD = 512, 256, 2


def resident_mib() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakResident(threading.Thread):
    """Samples this process's resident set until stopped; ``peak`` is the largest (MiB)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = resident_mib()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.005):
            self.peak = max(self.peak, resident_mib())


def save_sharded(common: dict, rows: Rows, shard: ClassShard, out: Path) -> int:
    """Every rank writes its own rows; returns the bytes this rank wrote."""
    root = out / "last.shards"
    generation = write_shards(root, common if shard.main else None, rows, {"rng": None}, shard)
    mine = [f"rank-{shard.rank:05d}-of-{shard.world_size:05d}.pt"] + (
        ["common.pt"] if shard.main else []
    )
    return sum((generation / name).stat().st_size for name in mine)


def save_gathered(common: dict, rows: Rows, shard: ClassShard, out: Path) -> int:
    """Rank 0 gathers every rank's rows and writes one file; returns the bytes written."""
    head = shard.gather_to_main(rows.head)
    optimizer = {name: shard.gather_to_main(value) for name, value in rows.optimizer.items()}
    assert rows.cloud is not None
    cloud = {name: shard.gather_to_main(value) for name, value in rows.cloud.items()}
    if head is None:
        return 0
    whole = Rows(0, shard.num_classes, head, optimizer, cloud)  # type: ignore[arg-type]
    path = ckpt.save_checkpoint(out / "last.pt", join_payload(common, whole))
    return path.stat().st_size


WAYS = {"sharded": save_sharded, "gathered": save_gathered}


def rank_main(rank: int, port: int, out: str, classes: int, ways: list[str]) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )
    try:
        shard = ClassShard(classes, rank, WORLD)
        counts = torch.full((classes,), 5, dtype=torch.long)
        counts[: classes // 10] = 50
        head = CosFaceHead(DIM, shard.size)
        cloud = FeatureCloud(counts, DIM, shard=shard, mode="full")
        criterion = LEAPLoss(head, cloud, shard=shard)
        optimizer = torch.optim.Adam(head.parameters(), lr=1e-3)
        generator = torch.Generator().manual_seed(rank)
        labels = torch.randint(0, classes, (BATCH // WORLD,), generator=generator)
        features = torch.randn(BATCH // WORLD, DIM, generator=generator).requires_grad_()
        criterion(features, labels, epoch=0, step=0).backward()  # Adam's moments exist now
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        held = sum(
            t.numel() * t.element_size()
            for t in [*head.parameters(), *cloud.buffers()]
            + [v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
        )
        local = {
            "head": {"weight": head.weight.detach()},
            "optimizer": optimizer.state_dict(),
            "cloud": cloud.state_dict(),
            "head_parameter": 0,
        }
        common, rows = split_payload(local, start=shard.start)
        results: dict[str, Any] = {"held": held}
        for way in ways:
            dist.barrier()
            before = resident_mib()
            sampler = PeakResident()
            sampler.start()
            written = WAYS[way](common, rows, shard, Path(out))
            sampler.done.set()
            sampler.join()
            results[way] = {
                "before": before,
                "peak": max(sampler.peak, resident_mib()),
                "written": written,
            }
            dist.barrier()
        torch.save(results, Path(out) / f"{rank}.pt")
    finally:
        dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=500_000)
    parser.add_argument(
        "--ways", default="sharded,gathered", help="comma-separated: " + ", ".join(WAYS)
    )
    args = parser.parse_args()
    ways = args.ways.split(",")
    unknown = [way for way in ways if way not in WAYS]
    if unknown:
        parser.error(f"--ways: unknown {', '.join(unknown)} (known: {', '.join(WAYS)})")
    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; "
        f"C = {args.classes:,}, D = {DIM}, {WORLD} gloo ranks"
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/var/tmp")) as out:
        mp.spawn(rank_main, args=(port, out, args.classes, ways), nprocs=WORLD)
        ranks = [torch.load(Path(out) / f"{r}.pt") for r in range(WORLD)]
    whole = sum(r["held"] for r in ranks) / 2**20
    share = whole / WORLD
    print(f"whole state (head, Adam, cloud) {whole:.0f} MiB; 1/{WORLD} of it {share:.0f} MiB")
    print(
        "| way | rank | resident before (MiB) | peak during the save | rise | rise / (1/N) "
        "| written (MiB) |"
    )
    print("|---|---|---|---|---|---|---|")
    for way in ways:
        for rank, result in enumerate(ranks):
            figures = result[way]
            rise = figures["peak"] - figures["before"]
            print(
                f"| {way} | {rank} | {figures['before']:.0f} | {figures['peak']:.0f} | "
                f"{rise:+.0f} | {rise / share:.2f} | {figures['written'] / 2**20:.0f} |"
            )


if __name__ == "__main__":
    main()
