"""``leap train`` and ``leap eval`` through the command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from leap_cli import app
from leap_core.training.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]

runner = CliRunner()


def write_spec(tmp_path, spec) -> str:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    return str(path)


def test_train_json_then_eval_reproduces_the_final_metrics(tiny_spec, tmp_path):
    spec_file = write_spec(tmp_path, tiny_spec(train={"epochs": 2}))
    run_dir = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "train",
            spec_file,
            "--json",
            "--no-mlflow",
            "--run-dir",
            str(run_dir),
            "--set",
            "train.seed=3",
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"rank1", "mAP", "mINP", "train_loss"} <= set(metrics)

    evaluated = runner.invoke(app, ["eval", str(run_dir / "last.pt"), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    again = json.loads(evaluated.stdout.strip().splitlines()[-1])
    for name in ("rank1", "rank5", "mAP", "mINP"):
        assert again[name] == metrics[name], name


def test_train_reports_spec_errors_in_one_line_with_exit_code_2(tiny_spec, tmp_path):
    spec_file = write_spec(tmp_path, tiny_spec())
    result = runner.invoke(
        app, ["train", spec_file, "--no-mlflow", "--set", "train.optimizer.lr=-1"]
    )
    assert result.exit_code == 2
    assert "train.optimizer.lr: Input should be greater than 0 (got -1)" in result.output
    assert "Traceback" not in result.output


def test_resume_with_a_different_spec_is_refused(tiny_spec, tmp_path):
    spec_file = write_spec(tmp_path, tiny_spec(train={"epochs": 2, "steps_per_epoch": 1}))
    run_dir = tmp_path / "run"
    first = runner.invoke(app, ["train", spec_file, "--no-mlflow", "--run-dir", str(run_dir)])
    assert first.exit_code == 0, first.output
    result = runner.invoke(
        app,
        [
            "train",
            spec_file,
            "--no-mlflow",
            "--set",
            "train.seed=9",
            "--resume",
            str(run_dir / "last.pt"),
        ],
    )
    assert result.exit_code == 2
    assert "the checkpoint was trained with a different spec" in result.output


def test_missing_dataset_root_is_a_clear_error(tmp_path):
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(
        yaml.safe_dump({"dataset": {"format": "market1501", "root": str(tmp_path / "absent")}})
    )
    result = runner.invoke(app, ["train", str(spec_file), "--no-mlflow"])
    assert result.exit_code == 2
    assert str(tmp_path / "absent") in result.output


def test_json_output_is_strict_nan_and_infinities_become_null():
    from leap_cli.common import strict_json

    shown = strict_json({"mAP": float("nan"), "curve": [float("inf"), 0.5], "n": 3})
    assert shown == '{"mAP": null, "curve": [null, 0.5], "n": 3}'
    assert json.loads(shown) == {"mAP": None, "curve": [None, 0.5], "n": 3}


@pytest.mark.process
def test_a_sigterm_checkpoints_at_the_step_boundary_exits_143_and_the_resume_finishes(
    tiny_spec, tmp_path
):
    spec_file = write_spec(
        tmp_path, tiny_spec(train={"epochs": 40, "checkpoint_every": 1}, eval={"protocol": "none"})
    )
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "leap_cli", "train", spec_file, "--no-mlflow"]
    command += ["--run-dir", str(run_dir)]
    env = {**os.environ, "LEAP_HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while not (run_dir / "last.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)  # training is under way: its first epoch is saved
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr[-2000:]
    line = " ".join(stderr.split())
    assert "preempted at epoch" in line and f"--resume {run_dir / 'last.pt'}" in line
    saved = load_checkpoint(run_dir / "last.pt")
    assert saved["within_epoch"] is not None and 1 <= saved["epoch"] < 40

    resumed = subprocess.run(
        [*command, "--resume", str(run_dir / "last.pt")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    final = load_checkpoint(run_dir / "last.pt")
    assert (final["epoch"], final["global_step"]) == (40, 40 * 4)
