"""Jobs trained end to end: HTTP submit → a real Celery worker process → PostgreSQL row and
events → the MLflow store; cancellation of running and queued jobs; retry that resumes."""

from __future__ import annotations

import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from tests.service.conftest import wait_status


def test_tiny_job_succeeds_and_its_mlflow_run_holds_params_metrics_and_checkpoint(
    worker, make_client, job_body, service_env
):
    client = make_client()
    job = client.post("/v1/jobs", json=job_body()).json()
    done = wait_status(client, job["id"], {"succeeded", "failed"}, timeout=120)
    assert done["status"] == "succeeded", done["error"]
    assert done["attempt"] == 1
    assert done["progress"]["global_step"] == done["progress"]["total_steps"] == 8
    assert done["progress"]["epoch"] == done["progress"]["epochs"] == 2
    assert done["progress"]["fraction"] == 1.0
    assert 0.0 <= done["metrics"]["rank1"] <= 1.0 and 0.0 <= done["metrics"]["mAP"] <= 1.0
    run_id = done["mlflow"]["run_id"]
    experiment = done["mlflow"]["experiment_id"]
    assert (
        experiment
        == MlflowClient(service_env["LEAP_MLFLOW_TRACKING_URI"]).get_run(run_id).info.experiment_id
    )
    assert done["mlflow"]["url"] == (
        f"http://mlflow.test:5000/#/experiments/{experiment}/runs/{run_id}"
        "?workflowType=machine_learning"
    )
    assert done["started_at"] <= done["finished_at"]

    mlflow = MlflowClient(service_env["LEAP_MLFLOW_TRACKING_URI"])
    run = mlflow.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.epochs"] == "2"
    assert run.data.params["model.backbone"] == "tiny_cnn"
    assert run.data.tags["job_id"] == job["id"]
    assert run.data.metrics["rank1"] == done["metrics"]["rank1"]
    assert [m.step for m in mlflow.get_metric_history(run_id, "train_loss")] == [1, 2]
    artifacts = {a.path for a in mlflow.list_artifacts(run_id, "checkpoints")}
    assert artifacts == {"checkpoints/last.pt"}

    events = client.get(f"/v1/jobs/{job['id']}/events").json()["items"]
    states = [(e["from_status"], e["to_status"]) for e in events if e["kind"] == "state"]
    assert states == [(None, "queued"), ("queued", "running"), ("running", "succeeded")]
    logs = [e["message"] for e in events if e["kind"] == "log"]
    assert any(line.startswith("epoch 2/2:") for line in logs), logs
    # The end-of-run evaluation decodes its query and gallery images once, and says so.
    decoded = [line for line in logs if line.startswith("decoding evaluation images:")]
    assert len(decoded) == 2 and all(" done in " in line for line in decoded), logs


def test_a_two_device_job_trains_as_two_ranks_with_one_mlflow_run(
    worker, make_client, job_body, service_env
):
    client = make_client()
    job = client.post("/v1/jobs", json=job_body(resources={"devices": 2})).json()
    done = wait_status(client, job["id"], {"succeeded", "failed"}, timeout=240)
    assert done["status"] == "succeeded", done["error"]
    assert done["progress"]["epoch"] == done["progress"]["epochs"] == 2
    assert 0.0 <= done["metrics"]["mAP"] <= 1.0
    mlflow = MlflowClient(service_env["LEAP_MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(
        [mlflow.get_run(done["mlflow"]["run_id"]).info.experiment_id],
        filter_string=f"tags.job_id = '{job['id']}'",
    )
    assert len(runs) == 1  # rank 0 alone logs
    assert runs[0].data.params["distributed.world_size"] == "2"
    assert runs[0].data.params["resources.devices"] == "2"
    events = client.get(f"/v1/jobs/{job['id']}/events").json()["items"]
    states = [(e["from_status"], e["to_status"]) for e in events if e["kind"] == "state"]
    assert states == [(None, "queued"), ("queued", "running"), ("running", "succeeded")]


def test_a_failing_job_reports_its_error(worker, make_client, job_body):
    client = make_client()
    empty = Path(job_body()["dataset"]["root"]).parent / "nope"
    empty.mkdir(exist_ok=True)  # there, so accepted; but not a Market-1501 tree
    body = job_body(dataset={"format": "market1501", "root": str(empty)})
    job = client.post("/v1/jobs", json=body).json()
    done = wait_status(client, job["id"], {"succeeded", "failed"}, timeout=60)
    assert done["status"] == "failed"
    assert done["error"].startswith(f"unreadable dataset: {empty}")


def test_cancel_running_within_10s_keeps_checkpoint_queued_at_once_and_retry_resumes(
    worker, make_client, job_body, service_env
):
    client = make_client()
    long_job = job_body(train={"epochs": 12})
    running = client.post("/v1/jobs", json=long_job).json()["id"]
    behind = client.post("/v1/jobs", json=job_body()).json()["id"]  # solo worker: waits

    def progressed() -> dict:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            job = client.get(f"/v1/jobs/{running}").json()
            if job["status"] == "running" and (job["progress"]["epoch"] or 0) >= 1:
                return job
            time.sleep(0.2)
        raise TimeoutError(job)

    job = progressed()
    assert job["progress"]["eta_seconds"] is not None and job["heartbeat_at"] is not None

    queued = client.post(f"/v1/jobs/{behind}/cancel").json()
    assert queued["status"] == "cancelled"

    asked = time.monotonic()
    assert client.post(f"/v1/jobs/{running}/cancel").json()["status"] == "cancelling"
    cancelled = wait_status(client, running, {"cancelled", "succeeded", "failed"}, timeout=10)
    assert cancelled["status"] == "cancelled"
    assert time.monotonic() - asked < 10
    checkpoint = Path(service_env["LEAP_RUNS_DIR"]) / running / "last.pt"
    assert checkpoint.is_file()
    progress = cancelled["progress"]
    steps_per_epoch = progress["total_steps"] // progress["epochs"]
    assert steps_per_epoch <= progress["global_step"] < progress["total_steps"]

    retried = client.post(f"/v1/jobs/{running}/retry").json()
    assert retried["status"] == "queued" and retried["attempt"] == 2
    done = wait_status(client, running, {"succeeded", "failed"}, timeout=120)
    assert done["status"] == "succeeded", done["error"]
    assert done["mlflow"]["run_id"] == cancelled["mlflow"]["run_id"]  # same run, continued

    events = client.get(f"/v1/jobs/{running}/events", params={"limit": 1000}).json()["items"]
    states = [(e["to_status"], e["attempt"]) for e in events if e["kind"] == "state"]
    assert states == [
        ("queued", 1),
        ("running", 1),
        ("cancelling", 1),
        ("cancelled", 1),
        ("queued", 2),
        ("running", 2),
        ("succeeded", 2),
    ]
    assert any("resumed at epoch" in e["message"] for e in events if e["attempt"] == 2)
    behind_states = [
        e["to_status"] for e in client.get(f"/v1/jobs/{behind}/events").json()["items"]
    ]
    assert behind_states == ["queued", "cancelled"]  # never ran
