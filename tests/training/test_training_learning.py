"""The tiny synthetic run learns: retrieval on unseen identities far above chance."""

from __future__ import annotations

import time

from leap_core.config import parse_spec
from leap_core.training.trainer import Trainer


def test_tiny_synthetic_run_reaches_rank1_far_above_chance(tmp_path):
    spec = parse_spec(
        {
            "dataset": {
                "format": "synthetic",
                "root": str(tmp_path / "data"),
                "synthetic": {
                    "identities": 60,
                    "test_identities": 30,
                    "cameras": 4,
                    "head": 6,
                    "tail_samples": 5,
                    "height": 32,
                    "width": 16,
                },
                "image_size": [32, 16],
            },
            "model": {"backbone": "tiny_cnn", "width": 16, "embedding_dim": 64},
            "method": {
                "head": {"kind": "cosface"},
                "leap": {"mode": "full", "cloud_start_epoch": 4},
            },
            "train": {
                "epochs": 16,
                "sampler": {"identities": 8, "instances": 4},
                "optimizer": {"lr": 0.002},
                "schedule": {"warmup_epochs": 1, "milestones": [12]},
                "num_workers": 0,
            },
            "eval": {"every_epochs": 0, "diagnostics": False},
        }
    )
    started = time.perf_counter()
    metrics = Trainer(spec, tmp_path / "run").fit()
    elapsed = time.perf_counter() - started
    # 30 query identities, one query each: picking a gallery identity at random gives
    # rank-1 ≈ 1/30 ≈ 3%.
    assert metrics["num_valid_queries"] == 30
    # This seed reaches rank-1 0.67 and mAP 0.65 in about 7 s on two CPU cores.
    assert metrics["rank1"] >= 0.4, (metrics, elapsed)
    assert metrics["mAP"] >= 0.35, (metrics, elapsed)
