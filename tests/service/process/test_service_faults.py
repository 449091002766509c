"""Training faults, made for real on one real worker process: a diverging loss, a failed
memory allocation, unreadable images, a dataset root that vanished before and during the
run, a full disk and a read-only file system under the checkpoint. Each job must fail with
a reason that names the fault, and the same worker process must go on to train the next
job.

The worker's run folders live on a small tmpfs mounted here (root is needed to mount it;
without it the two disk tests are skipped and say so), filled up or remounted read-only
while a job trains.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import wait_status
from tests.service.processes import celery_worker, drain_queue

FAULT_TIMEOUT = 90


def mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    return done.returncode == 0


@pytest.fixture(scope="module")
def runs_disk(service_env: dict[str, str]) -> Iterator[Path | None]:
    """A 4 MiB tmpfs for the fault worker's run folders, or None where mounting is refused."""
    path = Path(service_env["LEAP_HOME"]) / f"fault-runs-{uuid.uuid4().hex[:6]}"
    mounted = mount_tmpfs(path, "4m")
    yield path
    if mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture(scope="module")
def fault_worker(service_env: dict[str, str], api_url: str, runs_disk: Path) -> Iterator[int]:
    """The one worker process every job of this module runs in; yields its pid."""
    drain_queue(service_env)
    with celery_worker(service_env, "fault-worker", runs_dir=str(runs_disk)) as (process, _):
        yield process.pid
        assert process.poll() is None, "the worker died"


def remount_read_only(path: Path) -> None:
    """Remount read-only; the kernel refuses (EBUSY) while a file is open for writing,
    i.e. while a checkpoint is being written, so try again a moment later."""
    for _ in range(50):
        if (
            subprocess.run(["mount", "-o", "remount,ro", str(path)], capture_output=True).returncode
            == 0
        ):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{path} could not be remounted read-only")


def is_tmpfs(path: Path) -> bool:
    mounts = Path("/proc/mounts").read_text().splitlines()
    return any(line.split()[1] == str(path) and line.split()[0] == "tmpfs" for line in mounts)


def copy_dataset(tiny_root: str, name: str) -> Path:
    """A private copy of the tiny dataset inside the allowed data root."""
    copy = Path(tiny_root).parent / f"{name}-{uuid.uuid4().hex[:6]}"
    shutil.copytree(tiny_root, copy)
    return copy


def run_to_failure(
    client: httpx.Client,
    body: dict,
    worker_pid: int,
    while_running: Callable[[str], None] | None = None,
) -> dict:
    job = client.post("/v1/jobs", json=body)
    assert job.status_code == 201, job.text
    job_id = job.json()["id"]
    if while_running is not None:
        wait_status(client, job_id, {"running"}, timeout=FAULT_TIMEOUT)
        while_running(job_id)
    done = wait_status(client, job_id, {"succeeded", "failed", "cancelled"}, timeout=FAULT_TIMEOUT)
    assert done["status"] == "failed", done
    assert done["worker"].endswith(f":{worker_pid}"), done["worker"]
    events = client.get(f"/v1/jobs/{job_id}/events").json()["items"]
    assert events[-1]["to_status"] == "failed" and events[-1]["message"] == done["error"]
    return done


def wait_event(client: httpx.Client, job_id: str, prefix: str) -> None:
    """Wait until the job has logged an event line starting with ``prefix``."""
    deadline = time.monotonic() + FAULT_TIMEOUT
    while time.monotonic() < deadline:
        events = client.get(f"/v1/jobs/{job_id}/events").json()["items"]
        if any(event["message"].startswith(prefix) for event in events):
            return
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} logged no {prefix!r} within {FAULT_TIMEOUT} s")


def test_a_diverging_loss_fails_naming_epoch_and_step(fault_worker, make_client, job_body):
    body = job_body(
        method={"leap": {"mode": "off"}},
        train={
            "optimizer": {"kind": "sgd", "lr": 1e30, "momentum": 0.0},
            "schedule": {"warmup_epochs": 0, "milestones": []},
        },
    )
    done = run_to_failure(make_client(), body, fault_worker)
    assert re.fullmatch(
        r"training diverged: loss is (nan|inf|-inf) at epoch 0, global step "
        r"\d+; lower train.optimizer.lr or set train.grad_clip",
        done["error"],
    ), done["error"]


def test_a_failed_allocation_is_out_of_memory_with_what_to_lower(
    fault_worker, make_client, job_body
):
    # 2^36 embedding dimensions: the first layer alone asks for terabytes, which the
    # allocator refuses at once (as CUDA's does when a batch does not fit).
    done = run_to_failure(make_client(), job_body(model={"embedding_dim": 2**36}), fault_worker)
    assert done["error"].startswith("out of memory on cpu: "), done["error"]
    assert re.search(r"tried to allocate \d{12,} bytes", done["error"]), done["error"]
    assert done["error"].endswith(
        "lower train.batch_size (the sampler's identities × "
        "instances), dataset.image_size or model.embedding_dim"
    )


def test_unreadable_images_fail_naming_the_file(fault_worker, make_client, job_body, tiny_root):
    copy = copy_dataset(tiny_root, "corrupt")
    broken = sorted((copy / "bounding_box_train").glob("*.jpg"))
    assert broken, "the tiny dataset has Market-1501 layout"
    for image in broken:
        image.write_bytes(b"this is not a JPEG")
    done = run_to_failure(make_client(), job_body(dataset={"root": str(copy)}), fault_worker)
    match = re.fullmatch(r"unreadable dataset: (\S+): cannot decode image \(.*\)", done["error"])
    assert match, done["error"]
    assert Path(match.group(1)) in broken


def test_a_dataset_root_that_vanished_before_the_run_is_refused_by_the_worker(
    fault_worker, make_client, job_body, tiny_root
):
    client = make_client()
    blocker = client.post("/v1/jobs", json=job_body(train={"epochs": 500})).json()["id"]
    wait_status(client, blocker, {"running"}, timeout=FAULT_TIMEOUT)
    copy = copy_dataset(tiny_root, "vanishing")
    body = job_body(dataset={"format": "market1501", "root": str(copy)})
    job = client.post("/v1/jobs", json=body).json()["id"]  # accepted: the root exists now
    shutil.rmtree(copy)
    client.post(f"/v1/jobs/{blocker}/cancel")
    done = wait_status(client, job, {"succeeded", "failed"}, timeout=FAULT_TIMEOUT)
    assert done["status"] == "failed"
    assert done["error"] == (
        f"dataset root {copy} does not exist on this worker: it was removed or unmounted "
        f"after the job was submitted, or this worker does not mount it (LEAP_DATA_ROOTS "
        f"here: {Path(tiny_root).parent})"
    )
    assert done["progress"]["global_step"] is None  # it never started training


def test_a_dataset_root_that_vanishes_mid_run_fails_naming_it(
    fault_worker, make_client, job_body, tiny_root
):
    client = make_client()
    copy = copy_dataset(tiny_root, "vanishing")
    # Images read at every step (not decoded once into memory), so the loader meets the
    # vanished folder mid-run.
    body = job_body(
        dataset={"format": "market1501", "root": str(copy)},
        train={"epochs": 500, "cache_decoded_mb": 0},
    )
    done = run_to_failure(
        client,
        body,
        fault_worker,
        lambda job_id: (wait_event(client, job_id, "first step done"), shutil.rmtree(copy)),
    )
    assert done["error"].startswith(
        f"dataset root {copy} no longer exists (it was removed or unmounted after the job "
        f"was submitted): DatasetError: {copy}/"
    ), done["error"]
    assert done["error"].endswith(": image file not found")


@pytest.fixture
def disk(runs_disk: Path) -> Path:
    if not is_tmpfs(runs_disk):
        pytest.skip("mounting a tmpfs needs root; the disk faults cannot be made here")
    return runs_disk


def test_a_full_disk_at_the_checkpoint_fails_and_keeps_nothing_half_written(
    fault_worker, disk, make_client, job_body
):
    filler = disk / "filler"
    # write until the kernel says ENOSPC
    with open(filler, "wb") as file, pytest.raises(OSError) as full:
        while True:
            file.write(b"\0" * 65536)
            file.flush()
    assert full.value.errno == 28
    try:
        done = run_to_failure(make_client(), job_body(train={"epochs": 3}), fault_worker)
    finally:
        filler.unlink()
    run_dir = disk / done["id"]
    assert re.fullmatch(
        rf"checkpoint not saved: cannot write checkpoint {run_dir}/last.pt "
        r"\(\d+ bytes written\): No space left on device",
        done["error"],
    ), done["error"]
    assert done["progress"]["epoch"] == 1  # it trained; the first checkpoint failed
    assert not run_dir.exists() or list(run_dir.iterdir()) == []  # no partial file


def test_a_read_only_checkpoint_directory_fails_and_keeps_the_last_checkpoint(
    fault_worker, disk, make_client, job_body
):
    client = make_client()

    def freeze(job_id: str) -> None:
        wait_event(client, job_id, "checkpoint ")  # one good checkpoint first
        remount_read_only(disk)

    try:
        done = run_to_failure(client, job_body(train={"epochs": 60}), fault_worker, freeze)
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=True)
    run_dir = disk / done["id"]
    assert re.fullmatch(
        rf"checkpoint not saved: cannot write checkpoint {run_dir}/last.pt "
        r"\(\d+ bytes written\): Read-only file system",
        done["error"],
    ), done["error"]
    assert [path.name for path in run_dir.iterdir()] == ["last.pt"]  # the last good one


def test_the_same_worker_process_then_trains_a_job_to_success(fault_worker, make_client, job_body):
    client = make_client()
    job = client.post("/v1/jobs", json=job_body()).json()["id"]
    done = wait_status(client, job, {"succeeded", "failed"}, timeout=FAULT_TIMEOUT)
    assert done["status"] == "succeeded", done["error"]
    assert done["worker"].endswith(f":{fault_worker}")
