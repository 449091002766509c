"""Concurrent first use, on real processes: two workers that start their first jobs
together on a fresh machine must not fail them. They share a tracking store nobody has
created yet (a SQLite file, or an MLflow server with no experiment) and a synthetic
dataset nobody has generated; and a tracking server that stays away longer than the
retry window gets the job requeued as a new attempt, not failed at once, while the
worker goes on to the next job."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from mlflow.tracking import MlflowClient

from tests.mlflow_server import MlflowServer
from tests.service.conftest import TINY_JOB, wait_status
from tests.service.process.test_service_crash import events_of, states
from tests.service.processes import celery_worker, drain_queue

#: The tiny job on the synthetic set generated where the worker keeps its data.
FRESH_JOB = {
    **TINY_JOB,
    "dataset": {k: v for k, v in TINY_JOB["dataset"].items() if k != "root"},
    "eval": {"protocol": "none"},
}


@pytest.fixture
def fresh_home(tmp_path: Path) -> Path:
    """A LEAP_HOME with nothing in it: no dataset, no tracking store."""
    home = tmp_path / f"fresh-{uuid.uuid4().hex[:6]}"
    home.mkdir()
    return home


@pytest.fixture
def two_workers(service_env: dict[str, str], fresh_home: Path) -> Iterator[Callable[..., object]]:
    """``two_workers(tracking_uri, **settings)`` starts two workers on the session's queue
    that share ``fresh_home`` and log to ``tracking_uri``."""
    drain_queue(service_env)
    stack = []

    def start(tracking_uri: str, **settings: str) -> list:
        env = {
            **service_env,
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
            "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
        }
        for name in ("first-use-a", "first-use-b"):
            context = celery_worker(
                env,
                f"{name}-{uuid.uuid4().hex[:4]}",
                home=str(fresh_home),
                mlflow_tracking_uri=tracking_uri,
                **settings,
            )
            stack.append(context)
        return [context.__enter__() for context in stack]

    yield start
    for context in reversed(stack):
        context.__exit__(None, None, None)


def submit_all(client: httpx.Client, count: int) -> list[str]:
    return [
        client.post(
            "/v1/jobs", json={**FRESH_JOB, "train": {**FRESH_JOB["train"], "seed": i}}
        ).json()["id"]
        for i in range(count)
    ]


def test_eight_jobs_on_a_fresh_sqlite_store_all_succeed(make_client, two_workers, fresh_home):
    store = f"sqlite:///{fresh_home / 'tracking' / 'mlflow.db'}"
    two_workers(store)
    client = make_client()
    jobs = submit_all(client, 8)
    finished = [wait_status(client, job, {"succeeded", "failed"}, timeout=240) for job in jobs]
    assert [(job["status"], job["error"]) for job in finished] == [("succeeded", None)] * 8
    assert {job["attempt"] for job in finished} == {1}
    tracking = MlflowClient(store)
    experiment = tracking.get_experiment_by_name("leap")
    assert experiment is not None
    runs = tracking.search_runs([experiment.experiment_id])
    assert sorted(run.data.tags["job_id"] for run in runs) == sorted(jobs)
    # The synthetic set was generated once, in the shared home, and nothing else is left.
    assert sorted(
        p.name for p in (fresh_home / "data").iterdir() if not p.name.startswith(".")
    ) == [next(p.name for p in (fresh_home / "data").iterdir() if p.name.startswith("synthetic-"))]


def test_jobs_on_a_fresh_mlflow_server_with_no_experiment_all_succeed(
    make_client, two_workers, tmp_path
):
    server = MlflowServer(tmp_path / "mlflow")
    server.start()
    try:
        assert MlflowClient(server.uri).get_experiment_by_name("leap") is None
        two_workers(server.uri)
        client = make_client()
        jobs = submit_all(client, 4)
        finished = [wait_status(client, job, {"succeeded", "failed"}, timeout=240) for job in jobs]
        assert [(job["status"], job["error"]) for job in finished] == [("succeeded", None)] * 4
        experiments = [e.name for e in MlflowClient(server.uri).search_experiments()]
        assert experiments.count("leap") == 1
    finally:
        server.stop()


def test_a_tracking_server_away_past_the_window_requeues_then_fails_and_the_worker_goes_on(
    make_client, two_workers, tmp_path, database_url
):
    server = MlflowServer(tmp_path / "mlflow")
    server.start()
    server.stop()  # its port is known; nothing answers there
    workers = [
        process
        for process, _ in two_workers(server.uri, tracking_retry_seconds="2", max_attempts="2")
    ]
    client = make_client()
    job = client.post("/v1/jobs", json=FRESH_JOB).json()["id"]
    failed = wait_status(client, job, {"succeeded", "failed"}, timeout=120)
    assert failed["status"] == "failed"
    assert failed["attempt"] == 2
    assert failed["error"].startswith(f"tracking store {server.uri} unavailable for 2 s while ")
    assert failed["error"].endswith("on attempt 2 of 2; not retried (LEAP_MAX_ATTEMPTS)")
    assert states(events_of(database_url, job)) == [
        ("queued", 1),
        ("running", 1),
        ("queued", 2),
        ("running", 2),
        ("failed", 2),
    ]
    server.start()
    try:
        after = client.post("/v1/jobs", json=FRESH_JOB).json()["id"]
        done = wait_status(client, after, {"succeeded", "failed"}, timeout=180)
        assert (done["status"], done["attempt"]) == ("succeeded", 1)
        assert [process.poll() for process in workers] == [None, None]  # the same workers
    finally:
        server.stop()
