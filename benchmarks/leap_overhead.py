"""Cost of the feature cloud on top of a plain CosFace head, measured side by side.

One step = forward and backward of head + loss, plus (for LEAP) the statistics update and the
cloud. LEAP runs in full mode with half of each batch drawn from tail classes that have a
cloud. The two variants alternate within one run, so machine noise hits both alike; the
printed figure is the ratio of their median step times. Nothing here asserts a time.

    python benchmarks/leap_overhead.py [--classes 751 100000] [--repeats 15] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from leap_core.heads import CosFaceHead
from leap_core.leap import FeatureCloud
from leap_core.losses import LEAPLoss

BATCH, DIM = 256, 512


def long_tailed_counts(num_classes: int) -> torch.Tensor:
    """A tenth of the classes (at least 20) are head with 50 images, the rest tail with 5."""
    heads = max(20, num_classes // 10)
    counts = torch.full((num_classes,), 5, dtype=torch.long)
    counts[:heads] = 50
    return counts


def warm_up(cloud: FeatureCloud, heads: int, generator: torch.Generator,
            device: torch.device) -> None:
    """Give every class statistics: head classes wide, tail classes narrow, so tail classes
    get a cloud in full mode."""
    num_classes = cloud.num_classes
    directions = torch.randn(num_classes, DIM, generator=generator)
    for start in range(0, num_classes, 8192):
        classes = torch.arange(start, min(start + 8192, num_classes))
        labels = classes.repeat(3)
        spread = torch.where(labels < heads, 0.6, 0.1).unsqueeze(1)
        noise = torch.randn(labels.numel(), DIM, generator=generator) * spread
        features = F.normalize(directions[labels]) + noise / DIM**0.5
        cloud.update(features.to(device), labels.to(device))


def time_step(step, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def measure(num_classes: int, repeats: int,
            device: torch.device) -> tuple[float, float, float]:
    generator = torch.Generator().manual_seed(0)
    counts = long_tailed_counts(num_classes)
    heads = int((counts > 5).sum())
    cloud = FeatureCloud(counts, DIM, mode="full").to(device)
    warm_up(cloud, heads, generator, device)
    head = CosFaceHead(DIM, num_classes).to(device)
    criterion = LEAPLoss(head, cloud, cloud_start_epoch=0)
    head_labels = torch.randint(0, heads, (BATCH // 2,), generator=generator)
    tail_labels = torch.randint(heads, num_classes, (BATCH // 2,), generator=generator)
    labels = torch.cat([head_labels, tail_labels]).to(device)
    features = torch.randn(BATCH, DIM, generator=generator).to(device).requires_grad_()

    def cosface_step() -> None:
        F.cross_entropy(head(features, labels), labels).backward()

    def leap_step() -> None:
        criterion(features, labels, epoch=0).backward()

    for step in (cosface_step, leap_step):  # warm caches and allocator
        step()
    plain, leap = [], []
    for _ in range(repeats):
        plain.append(time_step(cosface_step, device))
        leap.append(time_step(leap_step, device))
        head.weight.grad = features.grad = None
    share = criterion.figures()["cloud_fraction"]
    return statistics.median(plain), statistics.median(leap), share


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[751, 100_000])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads, "
          f"batch {BATCH}, "
          f"D = {DIM}, {args.repeats} alternating repeats, medians")
    print(f"{'classes':>9} {'CosFace ms':>11} {'LEAP-CF ms':>11} {'cloud share':>12} "
          f"{'LEAP / CosFace':>15}")
    for num_classes in args.classes:
        plain, leap, share = measure(num_classes, args.repeats, device)
        print(f"{num_classes:>9} {plain * 1e3:>11.1f} {leap * 1e3:>11.1f} {share:>12.2f} "
              f"{leap / plain:>15.3f}")
    memory = FeatureCloud([50] * 100_000, DIM).memory
    angles = int(memory.capacity.sum())
    print(f"angle memories for 100,000 classes x 50 images: {memory.nbytes() / 2**20:.1f} MiB "
          f"({angles:,} float32 angles plus per-class counters and statistics); "
          f"class centres add {100_000 * DIM * 4 / 2**20:.1f} MiB at D = {DIM}")


if __name__ == "__main__":
    main()
