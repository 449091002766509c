"""The embedded default end to end: ``python -m leap_cli.stack demo`` on SQLite with kombu's
SQLAlchemy broker, a real worker process and a real MLflow server, in a fresh LEAP_HOME;
then the ``leap`` client against the stack it left running; ``leap train`` while the stack
is up (its run goes to the stack's server) and again after ``down`` (to the same store,
directly): one coherent MLflow setup, every run in one experiment."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import yaml
from mlflow.tracking import MlflowClient

from tests.service.conftest import ROOT, TINY_JOB, free_port


def test_embedded_demo_runs_both_methods_and_leaves_a_browsable_stack(tmp_path):
    home = tmp_path / "leap-home"
    spec = copy.deepcopy(TINY_JOB)
    spec_file = tmp_path / "tiny.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    api_port, mlflow_port = free_port(), free_port()
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("LEAP_", "MLFLOW_"))
    }
    env.update(LEAP_HOME=str(home), PYTHONPATH=str(ROOT))
    stack = [sys.executable, "-m", "leap_cli.stack"]
    ports = ["--api-port", str(api_port), "--mlflow-port", str(mlflow_port)]
    try:
        demo = subprocess.run(
            [*stack, "demo", *ports, "--spec", str(spec_file)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert "CosFace" in demo.stdout and "LEAP-CF" in demo.stdout
        assert f"MLflow UI: http://127.0.0.1:{mlflow_port}" in demo.stdout
        assert (home / "service.db").is_file() and (home / "broker.db").is_file()

        # The stack is still up: the leap client (config from $LEAP_HOME/client.yaml) sees
        # both jobs, and the MLflow server holds both runs with their checkpoints.
        listing = subprocess.run(
            [str(Path(sys.executable).parent / "leap"), "list", "--status", "succeeded"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert listing.returncode == 0, listing.stderr
        assert listing.stdout.count("succeeded") == 2
        mlflow = MlflowClient(f"http://127.0.0.1:{mlflow_port}")
        runs = mlflow.search_runs([mlflow.get_experiment_by_name("leap").experiment_id])
        assert sorted(run.data.tags["method"] for run in runs) == ["CosFace", "LEAP-CF"]
        for run in runs:
            assert run.info.status == "FINISHED"
            assert [a.path for a in mlflow.list_artifacts(run.info.run_id, "checkpoints")] == [
                "checkpoints/last.pt"
            ]
        during = leap_train(spec_file, env, seed=7)
        assert during.returncode == 0, during.stderr[-3000:]
        assert f"browse: http://127.0.0.1:{mlflow_port}" in during.stdout
        runs = mlflow.search_runs([mlflow.get_experiment_by_name("leap").experiment_id])
        assert len(runs) == 3  # the local run is in the server's experiment already
    finally:
        down = subprocess.run(
            [*stack, "down"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
    assert down.returncode == 0, down.stderr
    assert sorted(line.split(":")[0] for line in down.stdout.splitlines()) == [
        "api",
        "maintenance",
        "mlflow",
        "worker",
    ]
    status = subprocess.run(
        [*stack, "status"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert status.stdout.count("stopped") == 4
    after = leap_train(spec_file, env, seed=8)
    assert after.returncode == 0, after.stderr[-3000:]
    store = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    experiment = store.get_experiment_by_name("leap")
    assert experiment.artifact_location.startswith((home / "mlruns").as_uri())
    runs = store.search_runs([experiment.experiment_id])
    assert sorted(run.data.params["train.seed"] for run in runs) == ["0", "0", "7", "8"]
    assert {run.info.status for run in runs} == {"FINISHED"}


def leap_train(spec_file: Path, env: dict[str, str], seed: int) -> subprocess.CompletedProcess:
    """``leap train`` as a user runs it, from the repository root (where ``.leap`` would be)."""
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "leap"),
            "train",
            str(spec_file),
            "--set",
            f"train.seed={seed}",
            "--set",
            "tracking.log_model=false",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
