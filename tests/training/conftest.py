"""Fixtures for the training engine: one tiny synthetic dataset per test session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from leap_core.config import JobSpec, parse_spec
from leap_core.data.synthetic_cache import ensure_synthetic
from tests.tiny import tiny_job

TINY = tiny_job()


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
