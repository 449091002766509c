"""Training one job across processes: the trainer on two gloo ranks, its checkpoints at
another world size, ``leap train --nproc``, a rank killed mid-run, and two "machines" on
loopback joined by torchrun's rendezvous."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from leap_cli import app
from leap_core.config import parse_spec
from leap_core.inference.gallery import Gallery
from leap_core.training.checkpoint_store import open_checkpoint
from leap_core.training.hooks import Hook
from leap_core.training.trainer import Trainer, TrainingPreempted
from tests.ports import free_port
from tests.ranks import run_ranks

pytestmark = pytest.mark.process

ROOT = Path(__file__).resolve().parents[2]
LEAP = [sys.executable, "-m", "leap_cli"]


class StopAfterFirstEpoch(Hook):
    """Every rank saves at the end of epoch 0 and dies, as a killed job would."""

    def on_epoch_end(self, trainer, epoch, metrics):
        if epoch == 0:
            trainer.save()
            raise KeyboardInterrupt


def state_of(trainer: Trainer) -> dict[str, torch.Tensor]:
    cloud = trainer.cloud
    return {
        **{f"model.{k}": v.clone() for k, v in trainer.model.state_dict().items()},
        "head": trainer.head.weight.detach().clone(),
        "angles": cloud.memory.angles.clone(),
        "centres": cloud.centres.clone(),
    }


def straight_and_resumed(rank: int, world_size: int, job: dict, folder: str):
    spec = parse_spec(job)
    straight = Trainer(spec, Path(folder) / "straight")
    straight.fit()
    first = Trainer(spec, Path(folder) / "interrupted", [StopAfterFirstEpoch()])
    with contextlib.suppress(KeyboardInterrupt):
        first.fit()
    torch.manual_seed(1234 + rank)  # a new process starts from another RNG state
    resumed = Trainer(spec, Path(folder) / "interrupted")
    resumed.fit(resume=Path(folder) / "interrupted")
    return {
        "straight": state_of(straight),
        "resumed": state_of(resumed),
        "steps": resumed.global_step,
    }


def test_resume_at_the_same_world_size_equals_the_uninterrupted_run_and_at_one_process_runs(
    tiny_dict, tmp_path
):
    # A tight gradient clip: its norm must span every rank's head rows, or the backbone
    # copies would be scaled differently and drift apart.
    job = tiny_dict(
        train={"epochs": 3, "checkpoint_every": 1, "grad_clip": 0.05},
        eval={"protocol": "reid", "every_epochs": 0},
    )
    results = run_ranks(2, straight_and_resumed, job, str(tmp_path))
    for result in results:
        assert result["steps"] == 3 * 4
        assert result["straight"].keys() == result["resumed"].keys()
        for name, value in result["straight"].items():
            assert torch.equal(value, result["resumed"][name]), name
    # Ranks hold different classes, and the backbone's weights are the same everywhere (DDP;
    # batch-norm running statistics are each rank's own until DDP broadcasts rank 0's).
    heads = [result["straight"]["head"] for result in results]
    assert heads[0].shape[0] + heads[1].shape[0] == 24
    models = [
        {k: v for k, v in r["straight"].items() if k.startswith("model.") and "running" not in k}
        for r in results
    ]
    assert all(torch.equal(models[0][k], models[1][k]) for k in models[0])

    checkpoint = tmp_path / "interrupted" / "last.shards"
    payload = open_checkpoint(checkpoint).payload()
    assert payload["distributed"]["world_size"] == 2 and payload["head"]["weight"].shape[0] == 24
    assert torch.equal(
        payload["head"]["weight"], torch.cat([r["resumed"]["head"] for r in results])
    )
    # The same checkpoint resumes in one process (the classes are no longer sharded) and
    # evaluates.
    single = Trainer(parse_spec(job), tmp_path / "single")
    metrics = single.fit(resume=checkpoint)
    assert single.epoch == 3 and 0.0 <= metrics["mAP"] <= 1.0 and metrics["num_valid_queries"] > 0


class PreemptRankOne(Hook):
    """A SIGTERM reaches rank 1 alone, during global step 5 (epoch 1, step 1)."""

    def on_step(self, trainer, info):
        if info.global_step == 5 and trainer.shard.rank == 1:
            trainer.request_preemption()


def straight_and_preempted(rank: int, world_size: int, job: dict, folder: str):
    spec = parse_spec(job)
    straight = Trainer(spec, Path(folder) / "straight")
    straight.fit()
    first = Trainer(spec, Path(folder) / "preempted", [PreemptRankOne()])
    with pytest.raises(TrainingPreempted) as raised:
        first.fit()
    torch.manual_seed(1234 + rank)  # a new process starts from another RNG state
    resumed = Trainer(spec, Path(folder) / "preempted")
    resumed.fit(resume=raised.value.checkpoint)
    return {
        "straight": state_of(straight),
        "resumed": state_of(resumed),
        "stopped_at": first.global_step,
        "message": str(raised.value),
    }


def test_a_sigterm_on_one_rank_checkpoints_every_rank_mid_epoch_and_the_resume_is_exact(
    tiny_dict, tmp_path
):
    job = tiny_dict(
        train={"epochs": 3, "checkpoint_every": 1},
        method={"head": {"sample_rate": 0.5}, "leap": {"mode": "full", "cloud_start_epoch": 1}},
        eval={"protocol": "none"},
    )
    results = run_ranks(2, straight_and_preempted, job, str(tmp_path))
    for result in results:  # rank 0 stopped too, at the same step boundary
        assert result["stopped_at"] == 5
        assert "preempted at epoch 1, step 1 of 4" in result["message"]
        for name, value in result["straight"].items():
            assert torch.equal(value, result["resumed"][name]), name
    saved = open_checkpoint(tmp_path / "preempted").common
    assert saved["epoch"] == 3 and saved["within_epoch"] is None


def leap_env(home: Path) -> dict[str, str]:
    return {**os.environ, "LEAP_HOME": str(home), "PYTHONPATH": str(ROOT)}


def run_leap(home: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """``leap <arguments>`` in a fresh interpreter; it must succeed."""
    done = subprocess.run(
        [*LEAP, *arguments],
        capture_output=True,
        text=True,
        env=leap_env(home),
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_leap_train_nproc_2_learns_and_leap_eval_reads_its_checkpoint(tiny_root, tmp_path):
    spec = yaml.safe_load((ROOT / "examples" / "tiny_synthetic.yaml").read_text())
    spec["train"]["epochs"] = 4
    spec["eval"]["every_epochs"] = 0
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    run = run_leap(
        tmp_path,
        "train",
        str(spec_file),
        "--nproc",
        "2",
        "--no-mlflow",
        "--json",
        "--run-dir",
        str(tmp_path / "run"),
    )
    metrics = json.loads(run.stdout)
    assert metrics["rank1"] > 0.06  # 50 test identities: chance is 0.02
    assert "x 2 processes" in run.stderr
    shards = tmp_path / "run" / "last.shards"
    evaluation = run_leap(tmp_path, "eval", str(shards), "--json")
    assert json.loads(evaluation.stdout)["mAP"] == pytest.approx(metrics["mAP"], abs=1e-9)

    # The sharded checkpoint is read directly by embed and export, and consolidates to the
    # single file a one-process run writes, which embeds the same.
    runner = CliRunner()
    consolidated = runner.invoke(app, ["checkpoint", "consolidate", str(shards)])
    assert consolidated.exit_code == 0, consolidated.output
    whole = tmp_path / "run" / "consolidated.pt"
    assert f"wrote {whole}: 100 classes from 2 rank file(s) of {shards / '000004'}" in " ".join(
        consolidated.output.split()
    )
    payload = torch.load(whole, weights_only=True)
    assert payload["head"]["weight"].shape == (100, spec["model"]["embedding_dim"])
    images = tiny_root / "bounding_box_test"  # any images: embed resizes them
    galleries = {}
    for name, checkpoint in (("shards", shards), ("file", whole)):
        out = tmp_path / f"{name}.npz"
        embedded = runner.invoke(app, ["embed", str(checkpoint), str(images), "--out", str(out)])
        assert embedded.exit_code == 0, embedded.output
        galleries[name] = Gallery.load(out).embeddings
    assert galleries["shards"].shape[0] > 0
    assert np.array_equal(galleries["shards"], galleries["file"])
    exported = runner.invoke(app, ["export", str(shards), "--format", "torchscript"])
    assert exported.exit_code == 0, exported.output
    assert f"wrote {tmp_path / 'run' / 'last.torchscript.pt'}" in " ".join(exported.output.split())
    assert (tmp_path / "run" / "last.torchscript.pt").is_file() and whole.is_file()


def rank_pid(parent: int, local_rank: int) -> int | None:
    """The pid of a descendant of ``parent`` whose environment says LOCAL_RANK=local_rank."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"LOCAL_RANK={local_rank}".encode() not in environ:
            continue
        ancestor = int(entry.name)
        while ancestor > 1:
            if ancestor == parent:
                return int(entry.name)
            try:
                text = Path(f"/proc/{ancestor}/status").read_text()
            except OSError:
                break
            ancestor = int(
                next(line for line in text.splitlines() if line.startswith("PPid:")).split()[1]
            )
    return None


def open_or_none(run_dir: Path):
    try:
        return open_checkpoint(run_dir)
    except FileNotFoundError:
        return None


def signal_rank_one(tiny_dict, tmp_path: Path, number: signal.Signals):
    """``leap train --nproc 2`` of 24 short epochs, rank 1 sent ``number`` once the first
    checkpoint exists; returns the command, its exit status and stderr, and the run folder."""
    job = tiny_dict(train={"epochs": 24, "checkpoint_every": 1, "steps_per_epoch": 4})
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(job))
    run_dir = tmp_path / "run"
    command = [*LEAP, "train", str(spec_file), "--nproc", "2", "--no-mlflow"]
    command += ["--run-dir", str(run_dir)]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=leap_env(tmp_path)
    )
    deadline = time.monotonic() + 300
    while open_or_none(run_dir) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    victim = rank_pid(process.pid, 1)
    assert victim is not None
    os.kill(victim, number)
    _, stderr = process.communicate(timeout=300)
    return command, process.returncode, stderr, run_dir


def test_a_killed_rank_fails_the_run_naming_it_and_a_retry_resumes(tiny_dict, tmp_path):
    command, returncode, stderr, run_dir = signal_rank_one(tiny_dict, tmp_path, signal.SIGKILL)
    assert returncode == 1
    assert "rank 1 exited with signal 9 (SIGKILL)" in stderr
    assert f"--resume {run_dir}" in stderr.replace("\n", "")
    saved = open_checkpoint(run_dir).common["epoch"]
    assert 1 <= saved < 24

    run_leap(tmp_path, *command[len(LEAP) :], "--resume", str(run_dir), "--json")
    assert open_checkpoint(run_dir).common["epoch"] == 24


def test_a_sigterm_to_one_rank_of_leap_train_nproc_2_checkpoints_and_exits_143(tiny_dict, tmp_path):
    command, returncode, stderr, run_dir = signal_rank_one(tiny_dict, tmp_path, signal.SIGTERM)
    assert returncode == 143, stderr[-3000:]
    line = " ".join(stderr.split())
    assert "training across 2 processes was preempted" in line
    assert f"--resume {run_dir}" in line
    saved = open_checkpoint(run_dir)
    assert saved.common["within_epoch"] is not None and saved.world_size == 2

    run_leap(tmp_path, *command[len(LEAP) :], "--resume", str(run_dir), "--json")
    final = open_checkpoint(run_dir).common
    assert (final["epoch"], final["global_step"]) == (24, 24 * 4)


def test_two_machines_on_loopback_train_one_job(tiny_dict, tmp_path):
    job = tiny_dict(train={"epochs": 2})
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(job))
    endpoint = f"127.0.0.1:{free_port()}"
    launchers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes",
                "2",
                "--node-rank",
                str(node),
                "--nproc-per-node",
                "1",
                "--rdzv-backend",
                "c10d",
                "--rdzv-endpoint",
                endpoint,
                "--rdzv-id",
                "loopback-job",
                "-m",
                "leap_cli",
                "train",
                str(spec_file),
                "--no-mlflow",
                "--json",
                "--run-dir",
                str(tmp_path / "run"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=leap_env(tmp_path),
        )
        for node in (0, 1)
    ]
    outputs = [launcher.communicate(timeout=600) for launcher in launchers]
    for launcher, (_, stderr) in zip(launchers, outputs, strict=True):
        assert launcher.returncode == 0, stderr[-3000:]
    printed = [stdout for stdout, _ in outputs if stdout.strip()]
    assert len(printed) == 1  # rank 0 alone reports
    assert json.loads(printed[0])["num_valid_queries"] > 0
    assert open_checkpoint(tmp_path / "run").world_size == 2
