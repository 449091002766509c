"""Fixtures for the training engine: one tiny synthetic dataset per test session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from leap_core.config import JobSpec, parse_spec
from leap_core.training.data_setup import ensure_synthetic

TINY = {
    "name": "tiny-test",
    "dataset": {"format": "synthetic",
                "synthetic": {"identities": 24, "test_identities": 8, "cameras": 3, "head": 4,
                              "tail_samples": 3, "height": 32, "width": 16, "seed": 0},
                "image_size": [32, 16]},
    "model": {"backbone": "tiny_cnn", "embedding_dim": 32, "width": 8},
    "method": {"head": {"kind": "cosface"}, "leap": {"mode": "full", "cloud_start_epoch": 1}},
    "train": {"epochs": 3, "sampler": {"identities": 4, "instances": 4},
              "optimizer": {"lr": 0.003}, "schedule": {"warmup_epochs": 1, "milestones": [2]},
              "num_workers": 0, "steps_per_epoch": 4},
    "eval": {"every_epochs": 0},
}


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic") / "tiny"
    spec = parse_spec({**TINY, "dataset": {**TINY["dataset"], "root": str(root)}})
    return ensure_synthetic(spec.dataset)


@pytest.fixture
def tiny_spec(synthetic_root: Path) -> Callable[..., JobSpec]:
    """Builds the tiny spec with some sections' fields replaced: ``tiny_spec(train={...})``."""

    def build(**sections: dict) -> JobSpec:
        merged = {**TINY, "dataset": {**TINY["dataset"], "root": str(synthetic_root)}}
        for section, fields in sections.items():
            merged[section] = {**merged.get(section, {}), **fields}
        return parse_spec(merged)

    return build
