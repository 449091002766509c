"""A full training step, LEAP-CF against CosFace on the same batch, measured side by side.

Step = backbone forward and backward, head, loss (with the statistics update and the cloud
for LEAP), optimizer update. Default: ResNet-18 at 128×64, batch 64 (P×K = 16×4), 751
classes (Market-1501's training identities, cut to <H20,S5> counts), CPU. The two variants
alternate, and the printed figure is the ratio of their median step times.

    python benchmarks/train_step.py [--repeats 10] [--device cpu] [--cpu-time]
    python benchmarks/train_step.py --device cuda --backbone resnet50 --height 256 \
        --width 128 --amp --channels-last [--amp-dtype fp16]

``--amp`` runs the step under autocast in bfloat16 (``--amp-dtype fp16``: float16 with a
gradient scaler, as the trainer's ``train.amp`` does on CUDA).
"""

from __future__ import annotations

import argparse
import statistics

import torch
from timing import add_timing_arguments, describe, make_timer

from leap_core.heads import CosFaceHead
from leap_core.leap import FeatureCloud
from leap_core.losses import LEAPLoss
from leap_core.models import EmbeddingModel

CLASSES, HEADS, BATCH, DIM = 751, 20, 64, 512


def build(
    device: torch.device, cloud: bool, backbone: str, channels_last: bool
) -> tuple[torch.nn.Module, LEAPLoss, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = EmbeddingModel(backbone, DIM, last_stride=1).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    counts = [30] * HEADS + [5] * (CLASSES - HEADS)
    head = CosFaceHead(DIM, CLASSES).to(device)
    feature_cloud = FeatureCloud(counts, DIM, mode="full").to(device) if cloud else None
    criterion = LEAPLoss(head, feature_cloud, cloud_start_epoch=0)
    optimizer = torch.optim.Adam([*model.parameters(), *head.parameters()], lr=3.5e-4)
    return model, criterion, optimizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backbone", default="resnet18", choices=["resnet18", "resnet50"])
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--amp", action="store_true", help="autocast (bf16 unless --amp-dtype)")
    parser.add_argument("--amp-dtype", choices=["bf16", "fp16"], default="bf16")
    parser.add_argument("--channels-last", action="store_true")
    add_timing_arguments(parser)
    args = parser.parse_args()
    device = torch.device(args.device)
    timed = make_timer(device, args.cpu_time)
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(BATCH, 3, args.height, args.width, generator=generator).to(device)
    if args.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    # 16 identities × 4 images; half of the identities are tail classes.
    ids = torch.cat(
        [
            torch.randperm(HEADS, generator=generator)[:8],
            HEADS + torch.randperm(CLASSES - HEADS, generator=generator)[:8],
        ]
    )
    labels = ids.repeat_interleave(4).to(device)

    runs = {
        name: build(device, cloud, args.backbone, args.channels_last)
        for name, cloud in (("CosFace", False), ("LEAP-CF", True))
    }
    dtype = torch.float16 if args.amp_dtype == "fp16" else torch.bfloat16
    fp16 = args.amp and dtype == torch.float16
    scalers = {name: torch.amp.GradScaler(device.type, enabled=fp16) for name in runs}

    def step(name: str) -> float:
        model, criterion, optimizer = runs[name]
        scaler = scalers[name]

        def run() -> None:
            with torch.autocast(device.type, dtype=dtype, enabled=args.amp):
                loss = criterion(model(images), labels, epoch=0)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

        return timed(run)

    for _ in range(4):  # warm-up; also gives every batch class statistics in the cloud
        for name in runs:
            step(name)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name in runs:
            times[name].append(step(name))
    plain, leap = (statistics.median(times[name]) for name in ("CosFace", "LEAP-CF"))
    share = runs["LEAP-CF"][1].figures()["cloud_fraction"]
    print(
        f"torch {torch.__version__}, {device}, {describe(args.cpu_time)}; "
        f"{args.backbone} {args.height}x{args.width}, batch {BATCH}, {CLASSES} classes, "
        f"amp={args.amp and args.amp_dtype}, channels_last={args.channels_last}; "
        f"{args.repeats} alternating "
        f"repeats, medians"
    )
    print(
        f"CosFace step {plain * 1e3:.1f} ms ({BATCH / plain:.0f} img/s), LEAP-CF step "
        f"{leap * 1e3:.1f} ms ({BATCH / leap:.0f} img/s), cloud on {share:.0%} of the "
        f"batch: LEAP-CF / CosFace = {leap / plain:.3f}"
    )


if __name__ == "__main__":
    main()
