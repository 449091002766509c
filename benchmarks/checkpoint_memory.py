"""What writing a checkpoint costs rank 0 today: the peak resident memory of rank 0 while the
ranks' head, optimizer and feature-cloud state is gathered into the single-process layout
and written, against 1/N of the whole state.

Two gloo ranks each build their shard of a CosFace head (D = 512, Adam after one step) and
of the full-mode feature cloud, then do what ``Trainer.state`` and ``Trainer.save`` do with
them, through the same functions: the head rows gathered on rank 0
(``ClassShard.gather_to_main``), the optimizer's head state (``world.gather_optimizer``),
the cloud (``gather_cloud_state``), and :func:`~leap_core.training.checkpoint.save_checkpoint`
(which serialises in memory before it writes). Printed: rank 0's resident set before the
save and its peak during it (sampled every 5 ms), the checkpoint file's size, and the whole
state's bytes and 1/N of them.

    python benchmarks/checkpoint_memory.py [--classes 500000]

At 1,000,000 classes the two ranks and rank 0's gathered copy need more than this 24 GiB
machine has; the figures grow linearly in the classes.
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import threading
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from leap_core.distributed import ClassShard
from leap_core.heads import CosFaceHead
from leap_core.leap import FeatureCloud
from leap_core.leap.cloud_state import gather_cloud_state
from leap_core.losses import LEAPLoss
from leap_core.training import checkpoint as ckpt
from leap_core.training import world

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


def rank_main(rank: int, port: int, out: str, classes: int) -> None:
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
        dist.barrier()
        before = resident_mib()
        sampler = PeakResident()
        sampler.start()
        weight = shard.gather_to_main(head.weight.detach())
        state = world.gather_optimizer(optimizer.state_dict(), 0, shard)
        cloud_state, _ = gather_cloud_state(cloud)
        size = 0
        if rank == 0:
            path = Path(out) / "last.pt"
            payload = {"head": {"weight": weight}, "optimizer": state, "cloud": cloud_state}
            ckpt.save_checkpoint(path, payload)
            size = path.stat().st_size
        sampler.done.set()
        sampler.join()
        peak = max(sampler.peak, resident_mib())
        torch.save(
            {"before": before, "peak": peak, "held": held, "size": size},
            Path(out) / f"{rank}.pt",
        )
        dist.barrier()
    finally:
        dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=500_000)
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; "
        f"C = {args.classes:,}, D = {DIM}, {WORLD} gloo ranks"
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as out:
        mp.spawn(rank_main, args=(port, out, args.classes), nprocs=WORLD)
        ranks = [torch.load(Path(out) / f"{r}.pt") for r in range(WORLD)]
    whole = sum(r["held"] for r in ranks) / 2**20
    zero = ranks[0]
    print(
        f"rank 0: resident {zero['before']:.0f} MiB before the save, peak {zero['peak']:.0f} "
        f"MiB during it (+{zero['peak'] - zero['before']:.0f}); checkpoint "
        f"{zero['size'] / 2**20:.0f} MiB"
    )
    print(
        f"whole state (head, Adam, cloud) {whole:.0f} MiB, 1/{WORLD} of it {whole / WORLD:.0f} "
        f"MiB: rank 0's rise during the save / (1/N of the state) = "
        f"{(zero['peak'] - zero['before']) / (whole / WORLD):.2f}"
    )


if __name__ == "__main__":
    main()
