"""Training throughput with the real input pipeline against the model-only floor, side by side.

Three trainers of the same spec (default: the tiny example, ``examples/tiny_synthetic.yaml``)
run blocks of training steps in turn, so that load from other processes falls on all alike:

- **decoded**: the training images decoded once into memory, batches augmented as tensors
  (what a run uses when the set fits ``train.cache_decoded_mb``);
- **per-image**: the previous path, ``cache_decoded_mb: 0``: a DataLoader that decodes and
  transforms every image at every step (``--workers`` processes; the spec's by default);
- **floor**: the same model, head, LEAP loss and batch size on one pre-made batch, no loader.

A step is ``next(loader)`` + ``Trainer.train_step`` (forward, loss with the feature cloud on,
backward, update). The script prints images/s of each (median over blocks), the share of a
step spent waiting for data, the ratio to the floor against the goal (0.85), and the load
average. ``--cpu-time`` runs torch on one thread and reads that thread's CPU time, which other
processes' load barely changes (it cannot see loader worker processes, so it needs
``--workers 0``).

    .venv/bin/python benchmarks/input_pipeline.py [--blocks 8] [--steps 5] [--cpu-time]
    .venv/bin/python benchmarks/input_pipeline.py --workers 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from timing import add_timing_arguments, describe, make_timer

from leap_core.config import JobSpec
from leap_core.spec_paths import load_spec
from leap_core.training.data_setup import prepare_data
from leap_core.training.trainer import Trainer

GOAL = 0.85


def load_text() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"


class Variant:
    """One trainer and where its batches come from; times blocks of steps."""

    def __init__(self, name: str, trainer: Trainer, batches: Callable[[], Iterator]) -> None:
        self.name = name
        self.trainer = trainer
        self.batches = batches
        self.iterator = batches()
        self.epoch = trainer.spec.train.epochs - 1  # the feature cloud is on
        self.lr = trainer.spec.train.optimizer.lr
        self.step_times: list[float] = []
        self.data_times: list[float] = []

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            images, labels, _ = next(self.iterator)
        except StopIteration:  # a new epoch, as the trainer would start one
            self.trainer.data.sampler.set_epoch(self.trainer.data.sampler.epoch + 1)
            self.iterator = self.batches()
            images, labels, _ = next(self.iterator)
        return images, labels

    def block(self, steps: int, clock: Callable[[], float]) -> float:
        """Run ``steps`` steps; keeps the data-wait time, returns nothing useful itself."""
        waited = 0.0
        for _ in range(steps):
            start = clock()
            images, labels = self.next_batch()
            waited += clock() - start
            self.trainer.train_step(images, labels, self.epoch, self.lr)
        self.data_times.append(waited / steps)
        return waited


def fixed_batch(trainer: Trainer) -> Callable[[], Iterator]:
    """One real augmented P×K batch, made once and served forever: the model-only floor."""
    images, labels, camids = next(iter(trainer.data.loader))
    images = images.to(trainer.device)

    def forever() -> Iterator:
        while True:
            yield images, labels, camids

    return forever


def build(spec: JobSpec, budget_mb: int, workers: int, folder: Path) -> Trainer:
    spec = spec.model_copy(
        update={
            "train": spec.train.model_copy(
                update={"cache_decoded_mb": budget_mb, "num_workers": workers}
            ),
            "eval": spec.eval.model_copy(update={"protocol": "none", "diagnostics": False}),
        }
    )
    return Trainer(spec, folder, data=prepare_data(spec))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="examples/tiny_synthetic.yaml")
    parser.add_argument("--blocks", type=int, default=8, help="measured blocks per variant")
    parser.add_argument("--steps", type=int, default=5, help="training steps per block")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured blocks per variant")
    parser.add_argument(
        "--workers", type=int, default=None, help="per-image loader processes (default: spec's)"
    )
    parser.add_argument("--device", default="cpu")
    add_timing_arguments(parser)
    args = parser.parse_args()
    spec = load_spec(args.spec)
    spec = spec.model_copy(update={"train": spec.train.model_copy(update={"device": args.device})})
    workers = spec.train.num_workers if args.workers is None else args.workers
    if args.cpu_time and workers:
        raise SystemExit("--cpu-time cannot see loader worker processes; use --workers 0")
    timed = make_timer(torch.device(args.device), args.cpu_time)
    clock = time.thread_time if args.cpu_time else time.perf_counter
    load_before = load_text()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        decoded = build(spec, spec.train.cache_decoded_mb, 0, Path(tmp) / "decoded")
        decode_seconds = time.perf_counter() - started
        assert decoded.data.decoded, "the spec's training set is over train.cache_decoded_mb"
        per_image = build(spec, 0, workers, Path(tmp) / "per-image")
        floor = build(spec, spec.train.cache_decoded_mb, 0, Path(tmp) / "floor")
        variants = [
            Variant("decoded", decoded, lambda: iter(decoded.data.loader)),
            Variant("per-image", per_image, lambda: iter(per_image.data.loader)),
            Variant("floor", floor, fixed_batch(floor)),
        ]
        totals: dict[str, list[float]] = {v.name: [] for v in variants}
        for block in range(args.warmup + args.blocks):
            order = variants[block % 3 :] + variants[: block % 3]  # rotate who goes first
            for variant in order:
                seconds = timed(lambda v=variant: v.block(args.steps, clock))  # type: ignore[misc]
                if block >= args.warmup:
                    totals[variant.name].append(seconds / args.steps)
                else:
                    variant.data_times.pop()
    batch = spec.train.sampler.batch()
    rate = {name: batch / statistics.median(times) for name, times in totals.items()}
    wait = {v.name: statistics.median(v.data_times) for v in variants}
    records = len(decoded.data.manifest.records)
    height, width = spec.dataset.image_size
    print(
        f"torch {torch.__version__}, {args.device}, {describe(args.cpu_time)}; {args.spec}: "
        f"{spec.model.backbone} width {spec.model.width}, {height}x{width}, batch {batch}, "
        f"{spec.method.head.kind} + LEAP {spec.method.leap.mode}; {args.blocks} blocks of "
        f"{args.steps} steps per variant, interleaved, medians"
    )
    print(f"{load_before} before, {load_text()} after")
    print(f"decoding {records} training images once + setup: {decode_seconds:.2f} s")
    for name, label in (
        ("floor", "model-only floor (pre-made batch)"),
        ("decoded", "decoded in memory, batch augment"),
        ("per-image", f"per-image decode + transform, {workers} worker(s)"),
    ):
        step_ms = batch / rate[name] * 1e3
        print(
            f"  {label:<46} {rate[name]:7.1f} img/s  step {step_ms:6.1f} ms, "
            f"waiting for data {wait[name] * 1e3:5.2f} ms"
        )
    ratio = rate["decoded"] / rate["floor"]
    old = rate["per-image"] / rate["floor"]
    verdict = "met" if ratio >= GOAL else "NOT met"
    print(
        f"decoded / floor = {ratio:.3f} (goal {GOAL}: {verdict}); per-image / floor = {old:.3f}; "
        f"decoded / per-image = {rate['decoded'] / rate['per-image']:.2f}x"
    )


if __name__ == "__main__":
    main()
