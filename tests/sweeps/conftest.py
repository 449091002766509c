"""Fixtures for sweeps: a tiny synthetic dataset generated once, and sweep mappings on it."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from leap_core.config import parse_spec
from leap_core.data.synthetic_cache import ensure_synthetic
from tests.tiny import tiny_job

#: Two epochs of two steps: a real training run that takes about a second on a CPU.
TINY_BASE: dict[str, Any] = tiny_job(
    model={"embedding_dim": 16, "width": 4},
    method={"head": {"kind": "cosface"}, "leap": {"mode": "off", "cloud_start_epoch": 1}},
    train={
        "epochs": 2,
        "schedule": {"kind": "constant"},
        "steps_per_epoch": 2,
        "checkpoint_every": 1,
    },
    eval={"every_epochs": 0, "batch_size": 64},
)
del TINY_BASE["name"]


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sweep-synthetic") / "tiny"
    spec = parse_spec({**TINY_BASE, "dataset": {**TINY_BASE["dataset"], "root": str(root)}})
    return ensure_synthetic(spec.dataset)


@pytest.fixture
def tiny_sweep(synthetic_root: Path, tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """A sweep mapping over the tiny dataset: CosFace and LEAP-CF, seeds [0]; fields given
    as keyword arguments replace the sweep's."""

    def build(**fields: Any) -> dict[str, Any]:
        base = copy.deepcopy(TINY_BASE)
        base["dataset"]["root"] = str(synthetic_root)
        sweep = {
            "name": "tiny",
            "base": base,
            "output": str(tmp_path / "out"),
            "axes": {
                "method": {
                    "CosFace": {"method.leap.mode": "off"},
                    "LEAP-CF": {"method.leap.mode": "full"},
                }
            },
            "seeds": [0],
        }
        sweep.update(fields)
        return sweep

    return build
