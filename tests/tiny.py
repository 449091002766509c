"""The tiny synthetic job the suites train on: 24 identities at 32×16 pixels and a small CNN,
a real training run that takes seconds on a CPU. Each suite copies it and changes what it
tests (epochs, steps, head, cloud)."""

from __future__ import annotations

import copy
from typing import Any

TINY_JOB: dict[str, Any] = {
    "name": "tiny-test",
    "dataset": {
        "format": "synthetic",
        "synthetic": {
            "identities": 24,
            "test_identities": 8,
            "cameras": 3,
            "head": 4,
            "tail_samples": 3,
            "height": 32,
            "width": 16,
            "seed": 0,
        },
        "image_size": [32, 16],
    },
    "model": {"backbone": "tiny_cnn", "embedding_dim": 32, "width": 8},
    "method": {"head": {"kind": "cosface"}, "leap": {"mode": "full", "cloud_start_epoch": 1}},
    "train": {
        "epochs": 3,
        "sampler": {"identities": 4, "instances": 4},
        "optimizer": {"lr": 0.003},
        "schedule": {"warmup_epochs": 1, "milestones": [2]},
        "num_workers": 0,
        "steps_per_epoch": 4,
    },
    "eval": {"every_epochs": 0},
}


def tiny_job(**sections: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of :data:`TINY_JOB` with the given sections' fields replaced."""
    job = copy.deepcopy(TINY_JOB)
    for section, fields in sections.items():
        job[section] = {**job.get(section, {}), **fields} if isinstance(fields, dict) else fields
    return job
