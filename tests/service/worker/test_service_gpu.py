"""One job per GPU: how worker children and worker processes share a machine's GPUs
(real lock files; the devices are names, so no GPU is needed)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from worker import gpu


@pytest.fixture(autouse=True)
def release_locks():
    yield
    while gpu._held:
        os.close(gpu._held.pop())


def test_each_child_claims_a_different_gpu_and_none_when_all_are_taken(tmp_path):
    assert [gpu.claim_gpu(["0", "1"], tmp_path) for _ in range(3)] == ["0", "1", None]


def test_a_dead_childs_gpu_is_free_again(tmp_path):
    code = (
        "import sys; from pathlib import Path; from worker.gpu import claim_gpu; "
        f"print(claim_gpu(['0', '1'], Path({str(tmp_path)!r})))"
    )
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert first.stdout.strip() == second.stdout.strip() == "0"  # released at exit


def test_workers_sharing_a_machine_split_its_gpus(tmp_path):
    assert gpu.claim_for_worker(["0", "1", "2"], "all", tmp_path) == ["0", "1", "2"]
    assert gpu.claim_for_worker(["0", "1", "2"], "2", tmp_path) == ["0", "1"]
    assert gpu.claim_for_worker(["0", "1", "2"], "2", tmp_path) == ["2"]
    with pytest.raises(SystemExit, match="every GPU"):
        gpu.claim_for_worker(["0", "1", "2"], "1", tmp_path)


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert gpu.visible_gpus() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpu.visible_gpus() == []


def test_without_gpus_the_worker_runs_one_job_per_core():
    from worker.__main__ import pool_size

    assert pool_size(["0", "1", "2"], None, 16) == 3  # one per GPU, whatever the cores
    assert pool_size([], None, 2) == 2  # one per core
    assert pool_size([], "1", 8) == 1  # LEAP_WORKER_CPU_JOBS chooses
    assert pool_size([], None, None) == 1
    with pytest.raises(
        SystemExit, match="LEAP_WORKER_CPU_JOBS must be a positive integer, got '0'"
    ):
        pool_size([], "0", 8)


def test_a_cpu_child_trains_on_one_thread():
    """The child's start-up hook, run in a fresh process with no GPU visible."""
    probe = (
        "import torch; torch.set_num_threads(4); from worker import gpu; "
        "gpu.pin_child_to_gpu(); print(torch.get_num_threads())"
    )
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert result.stdout.strip() == "1", result.stderr[-2000:]


def test_a_child_of_a_multi_gpu_worker_pins_several_gpus_and_jobs_use_them(tmp_path):
    """LEAP_WORKER_DEVICES_PER_CHILD=2 on a 4-GPU machine: two children of two GPUs each; a
    2-device job in a child uses that child's pair, a 3-device job cannot run there."""
    from worker.__main__ import pool_size

    assert pool_size(["0", "1", "2", "3"], None, 16, per_child=2) == 2
    probe = (
        "import tempfile, os; from pathlib import Path; from worker import gpu; "
        f"gpu.default_lock_dir = lambda: Path({str(tmp_path)!r}); "
        "gpu.pin_child_to_gpu(); print(os.environ['CUDA_VISIBLE_DEVICES'], "
        "gpu.claim_devices(2), gpu.claim_devices(3), gpu.machine_devices()); "
        "import sys; sys.stdout.flush(); input()"
    )
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0,1,2,3", "LEAP_WORKER_DEVICES_PER_CHILD": "2"}
    first = subprocess.Popen(
        [sys.executable, "-c", probe],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert first.stdout is not None
        assert first.stdout.readline().split() == ["0,1", "(['0',", "'1'],", "[])", "None", "2"]
        second = subprocess.run(
            [sys.executable, "-c", probe], env=env, input="\n", capture_output=True, text=True
        )
        assert second.stdout.split()[0] == "2,3", second.stderr[-2000:]
    finally:
        first.communicate("\n")


def test_cpu_slots_are_claimed_all_or_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu, "_machine", [])
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    claimed = gpu.claim_devices(2, tmp_path)
    assert claimed is not None and claimed[0] == ["0", "1"]
    assert gpu.claim_devices(2, tmp_path) is None  # one slot left: nothing is kept
    alone = gpu.claim_devices(1, tmp_path)
    assert alone is not None and alone[0] == ["2"]
    gpu.release(claimed[1])
    again = gpu.claim_devices(2, tmp_path)
    assert again is not None and again[0] == ["0", "1"]
    gpu.release(again[1] + alone[1])
