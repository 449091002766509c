"""Sanity check of the feature cloud during a real Omniglot-LT run (validation split).

Trains one LEAP cell of ``omniglot_lt_validation.yaml`` (default: LEAP-CF, seed 0) with a
hook that, at the end of every epoch, recomputes the cloud variance of every class from the
angle statistics by the spec's formula (eq. 9 full: σ² = Σ(K_i−1)σ_i² / Σ(K_i−1) over classes
with statistics, v_i = σ² − σ_i² where positive; eq. 6 vanilla: v_x = max(σ_h² − σ_x², 0) for
tail classes) with numpy, independently of ``FeatureCloud.cloud_variance``, and prints both
side by side with the head/tail statistics. It also prints what the cloud amounts to: the
share of head and tail classes that get one, and the mean offset standard deviation
(radians) compared with the spread of the angles themselves.

    .venv/bin/python benchmarks/omniglot_lt_cloud_check.py [--method "LEAP-CF start 4"]

Prints one line per epoch and exits non-zero if the two computations differ. With a
baseline (``--method CosFace``) only the final matched-size report is printed.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

from leap_core.data.readers import read_listing
from leap_core.evaluation.angular import class_angular_stats
from leap_core.sweeps import expand, load_sweep
from leap_core.sweeps.validation import holdout_listing
from leap_core.training.data_setup import prepare_data
from leap_core.training.hooks import Hook
from leap_core.training.trainer import Trainer

HERE = Path(__file__).resolve().parent


def expected_variance(
    mode: str, counts: np.ndarray, variance: np.ndarray, stored: np.ndarray, is_head: np.ndarray
) -> np.ndarray:
    """The spec's cloud variance per class, from per-class statistics (float64)."""
    has = stored >= 2
    out = np.zeros(len(counts))
    if mode == "vanilla":
        heads = is_head & has
        if not heads.any():
            return out
        target = variance[heads].mean()
        tail = ~is_head & has
        out[tail] = np.maximum(target - variance[tail], 0.0)
        return out
    weight = (counts - 1.0) * has
    if weight.sum() == 0:
        return out
    target = (weight * np.where(has, variance, 0.0)).sum() / weight.sum()
    gets = has & (variance < target)
    out[gets] = target - variance[gets]
    return out


class CloudCheck(Hook):
    """Compares the cloud's variances with :func:`expected_variance` after every epoch."""

    def __init__(self) -> None:
        self.worst = 0.0

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        cloud = trainer.cloud
        if cloud is None:  # a baseline: only the final matched-size report applies
            return
        stats = cloud.class_stats()
        counts = cloud.class_counts.double().cpu().numpy()
        variance = stats.variance.double().cpu().numpy()
        stored = stats.count.cpu().numpy()
        is_head = cloud.is_head.cpu().numpy()
        mine = expected_variance(cloud.mode, counts, variance, stored, is_head)
        theirs = cloud.cloud_variance().double().cpu().numpy()
        error = float(np.abs(mine - theirs).max())
        self.worst = max(self.worst, error)
        has = stored >= 2
        head, tail = is_head & has, ~is_head & has
        started = epoch >= trainer.spec.method.leap.cloud_start_epoch
        print(
            f"epoch {epoch + 1:2d} cloud {'on ' if started else 'off'} | "
            f"angle var head {variance[head].mean():.4f} tail {variance[tail].mean():.4f} "
            f"(classes with stats {int(head.sum())}/{int(tail.sum())}) | "
            f"v>0: head {np.mean(theirs[is_head] > 0):.0%} "
            f"tail {np.mean(theirs[~is_head] > 0):.0%}"
            f" | mean cloud std tail {np.sqrt(theirs[tail]).mean():.4f} rad "
            f"(angle std tail {np.sqrt(variance[tail]).mean():.4f}) | "
            f"step fig: cloud_fraction {metrics.get('train_cloud_fraction', math.nan):.2f} "
            f"std {metrics.get('train_cloud_std_mean', math.nan):.4f} | "
            f"max |v_spec - v_cloud| {error:.2e}",
            flush=True,
        )


def matched_size_report(trainer: Trainer, size: int, seed: int, draws: int = 20) -> None:
    """Head vs tail angular variance of the final training embeddings, and the head classes
    measured on only ``size`` random images each: an angle to a centre estimated from few
    samples is smaller, so part of any head/tail gap is the sample size itself."""
    diagnostics = trainer.diagnostics
    features, labels = diagnostics.features, diagnostics.labels
    head_ids = np.flatnonzero(diagnostics.head)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(draws):
        keep = np.concatenate(
            [rng.choice(np.flatnonzero(labels == c), size, replace=False) for c in head_ids]
        )
        stats = class_angular_stats(features[keep], labels[keep], len(diagnostics.head))
        values.append(float(np.nanmean(stats.variance[head_ids])))
    split = diagnostics.stats.head_tail(diagnostics.head)
    print(
        f"final training embeddings: head variance {split['head_angle_variance']:.4f} "
        f"(all images), head variance on {size} random images per class "
        f"{np.mean(values):.4f} ± {np.std(values):.4f} ({draws} draws), tail variance "
        f"{split['tail_angle_variance']:.4f} ({size} images)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default=str(HERE / "omniglot_lt_validation.yaml"))
    parser.add_argument("--method", default="LEAP-CF start 4")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    sweep, folder = load_sweep(args.sweep)
    cells = [
        c
        for c in expand(sweep, folder)
        if c.label(sweep.method_axis) == args.method and c.seed == args.seed
    ]
    if len(cells) != 1:
        print(f"--method: no single cell {args.method!r} seed {args.seed} in {args.sweep}")
        return 2
    cell = cells[0]
    listing = None
    if sweep.validation is not None:
        listing = holdout_listing(read_listing(cell.spec.dataset), sweep.validation)
    check = CloudCheck()
    spec = cell.spec.model_copy(
        update={"eval": cell.spec.eval.model_copy(update={"protocol": "none", "diagnostics": True})}
    )
    trainer = Trainer(
        spec, Path(".leap/cloud-check"), [check], data=prepare_data(spec, listing=listing)
    )
    print(
        f"{cell.title()}: mode {spec.method.leap.mode}, P {spec.method.leap.P}, "
        f"gamma {spec.method.leap.gamma}, cloud from epoch {spec.method.leap.cloud_start_epoch}"
    )
    trainer.fit()
    matched_size_report(trainer, spec.dataset.long_tail.tail_samples, args.seed)
    print(f"largest difference between the spec's formula and the cloud: {check.worst:.2e}")
    return 0 if check.worst < 1e-9 else 1


if __name__ == "__main__":
    sys.exit(main())
