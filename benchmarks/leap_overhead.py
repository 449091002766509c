"""Cost of the feature cloud on top of a plain CosFace head, measured side by side.

One step = forward and backward of head + loss, plus (for LEAP) the statistics update and the
cloud. LEAP runs in full mode with half of each batch drawn from tail classes that have a
cloud. The two variants alternate within one run, so machine noise hits both alike; the
printed figure is the ratio of their median step times. Nothing here asserts a time.

    python benchmarks/leap_overhead.py [--classes 751 100000] [--repeats 15] [--device cpu] \
        [--cpu-time] [--offset per_logit per_sample]

``--offset`` lists the readings of the offset to time (``method.leap.offset``); the goals
of the performance issue are printed beside each ratio.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import torch
import torch.nn.functional as F
from timing import add_timing_arguments, describe, make_timer

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


def class_features(
    directions: torch.Tensor, labels: torch.Tensor, heads: int, generator: torch.Generator
) -> torch.Tensor:
    """Features around each class's direction: head classes spread wide, tail classes
    narrow, so in full mode the tail classes (and only they) get a cloud."""
    wide = 0.2 + 0.8 * torch.rand(labels.numel(), generator=generator)
    spread = torch.where(labels < heads, wide, 0.1).unsqueeze(1)
    noise = torch.randn(labels.numel(), DIM, generator=generator) * spread
    return F.normalize(directions[labels]) + noise / DIM**0.5


def warm_up(
    cloud: FeatureCloud,
    directions: torch.Tensor,
    heads: int,
    generator: torch.Generator,
    device: torch.device,
) -> None:
    """Give every class statistics before timing."""
    num_classes = cloud.num_classes
    for start in range(0, num_classes, 8192):
        labels = torch.arange(start, min(start + 8192, num_classes)).repeat(3)
        features = class_features(directions, labels, heads, generator)
        cloud.update(features.to(device), labels.to(device))


#: (offset reading, classes) → the ratio the method should stay under.
GOALS = {("per_logit", 751): 1.25, ("per_logit", 100_000): 1.15}
GOALS |= {("per_sample", 751): 1.05, ("per_sample", 100_000): 1.05}


def measure(
    num_classes: int,
    repeats: int,
    device: torch.device,
    timed: Callable[[Callable[[], None]], float],
    offset: str = "per_logit",
) -> tuple[float, float, float]:
    generator = torch.Generator().manual_seed(0)
    counts = long_tailed_counts(num_classes)
    heads = int((counts > 5).sum())
    cloud = FeatureCloud(counts, DIM, mode="full", offset=offset).to(device)
    directions = torch.randn(num_classes, DIM, generator=generator)
    warm_up(cloud, directions, heads, generator, device)
    head = CosFaceHead(DIM, num_classes).to(device)
    criterion = LEAPLoss(head, cloud, cloud_start_epoch=0)
    head_labels = torch.randint(0, heads, (BATCH // 2,), generator=generator)
    tail_labels = torch.randint(heads, num_classes, (BATCH // 2,), generator=generator)
    labels = torch.cat([head_labels, tail_labels])
    # A few batches of realistic features, cycled, so the memories keep the warm-up's
    # head/tail structure instead of filling with one repeated batch.
    batches = [
        class_features(directions, labels, heads, generator).to(device).requires_grad_()
        for _ in range(4)
    ]
    labels = labels.to(device)
    turn = {"CosFace": 0, "LEAP": 0}

    def next_batch(name: str) -> torch.Tensor:
        turn[name] += 1
        return batches[turn[name] % len(batches)]

    baseline = LEAPLoss(head)  # the criterion a CosFace run trains with

    def cosface_step() -> None:
        baseline(next_batch("CosFace"), labels, epoch=0).backward()

    def leap_step() -> None:
        criterion(next_batch("LEAP"), labels, epoch=0).backward()

    for step in (cosface_step, leap_step):  # warm caches and allocator
        step()
    plain, leap = [], []
    for _ in range(repeats):
        plain.append(timed(cosface_step))
        leap.append(timed(leap_step))
        head.weight.grad = None
        for batch in batches:
            batch.grad = None
    share = criterion.figures()["cloud_fraction"]
    return statistics.median(plain), statistics.median(leap), share


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[751, 100_000])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--offset",
        nargs="+",
        default=["per_logit", "per_sample"],
        choices=["per_logit", "per_sample", "target_only"],
    )
    add_timing_arguments(parser)
    args = parser.parse_args()
    device = torch.device(args.device)
    timed = make_timer(device, args.cpu_time)
    print(
        f"torch {torch.__version__}, {device}, {describe(args.cpu_time)}, "
        f"batch {BATCH}, "
        f"D = {DIM}, {args.repeats} alternating repeats, medians"
    )
    print(
        f"{'offset':>11} {'classes':>9} {'CosFace ms':>11} {'LEAP-CF ms':>11} "
        f"{'cloud share':>12} {'LEAP / CosFace':>15} {'goal':>6}"
    )
    for offset in args.offset:
        for num_classes in args.classes:
            plain, leap, share = measure(num_classes, args.repeats, device, timed, offset)
            goal = GOALS.get((offset, num_classes))
            print(
                f"{offset:>11} {num_classes:>9} {plain * 1e3:>11.1f} {leap * 1e3:>11.1f} "
                f"{share:>12.2f} {leap / plain:>15.3f} {'' if goal is None else f'≤{goal}':>6}"
            )
    memory = FeatureCloud([50] * 100_000, DIM).memory
    angles = int(memory.capacity.sum())
    print(
        f"angle memories for 100,000 classes x 50 images: {memory.nbytes() / 2**20:.1f} MiB "
        f"({angles:,} float32 angles plus per-class counters and statistics); "
        f"class centres add {100_000 * DIM * 4 / 2**20:.1f} MiB at D = {DIM}"
    )


if __name__ == "__main__":
    main()
