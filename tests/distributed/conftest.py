"""One tiny synthetic dataset for the distributed runs of this session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from leap_core.config import parse_spec
from leap_core.data.synthetic_cache import ensure_synthetic
from tests.tiny import tiny_job


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    job = tiny_job()
    root = tmp_path_factory.mktemp("synthetic") / "tiny"
    return ensure_synthetic(
        parse_spec({**job, "dataset": {**job["dataset"], "root": str(root)}}).dataset
    )


@pytest.fixture
def tiny_dict(tiny_root: Path):
    """The tiny job as a plain dict on the session's dataset, with sections replaced."""

    def build(**sections: dict[str, Any]) -> dict[str, Any]:
        job = tiny_job(**sections)
        job["dataset"] = {**job["dataset"], "root": str(tiny_root)}
        return job

    return build
