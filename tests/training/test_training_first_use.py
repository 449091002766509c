"""Two ``leap train`` processes started together on a fresh ``LEAP_HOME``: both generate
(or find) the synthetic set and both create (or find) the embedded MLflow store and the
``leap`` experiment; both runs succeed and are recorded, in one experiment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.tiny import tiny_job

#: Real processes started together (the process-level tests; not in `make test-fast`).
pytestmark = pytest.mark.process

ROOT = Path(__file__).resolve().parents[2]
LEAP = "import sys; from leap_cli import app; sys.argv = ['leap', *sys.argv[1:]]; app()"


def test_two_leap_train_processes_on_a_fresh_home_both_succeed(tmp_path):
    home = tmp_path / "home"
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(tiny_job(train={"epochs": 2}, eval={"protocol": "none"})))
    env = {**os.environ, "LEAP_HOME": str(home), "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", LEAP, "train", str(spec), "--json", "--set", f"train.seed={i}"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [run.communicate(timeout=300) for run in runs]
    for run, (out, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err[-3000:]
        assert "train_loss" in json.loads(out.strip().splitlines()[-1])
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("leap")
    assert experiment is not None
    finished = client.search_runs([experiment.experiment_id])
    assert sorted(run.data.params["train.seed"] for run in finished) == ["0", "1"]
    assert {run.info.status for run in finished} == {"FINISHED"}
    generated = [path for path in (home / "data").iterdir() if not path.name.startswith(".")]
    assert len(generated) == 1  # one synthetic set, made once
