"""Workers that die or lose their database, for real: a worker killed with SIGKILL in the
middle of training (its job is requeued by the maintenance loop and resumed from its last
checkpoint on another worker), a database that refuses connections while a worker leases,
trains and records a job (the worker waits and writes again), and a worker whose lease was
taken from it (it stops without writing).

The database outages run on a database of their own, with a worker and a queue of their
own, so that cutting its connections disturbs no other test.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import make_url, select

from jobs.admin import create_key
from jobs.db import session_factory, session_scope
from jobs.dispatch import dispatch, dispatch_committed
from jobs.models import Job, JobEvent, JobStatus
from jobs.recovery import recover
from jobs.service import new_job
from jobs.settings import Settings
from leap_core.config import parse_spec
from tests.service.conftest import scratch_database, wait_for, wait_status
from tests.service.processes import celery_worker, extra_api, maintenance_loop
from tests.service.servers import servers
from worker.lease import Lease, finish, lease

TIMEOUT = 120


def events_of(database_url: str, job_id: str) -> list[JobEvent]:
    with session_scope(database_url) as session:
        return list(
            session.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id))
        )


def states(events: list[JobEvent]) -> list[tuple[str, int]]:
    return [(event.to_status, event.attempt) for event in events if event.kind == "state"]


def logged(events: list[JobEvent], prefix: str) -> list[str]:
    return [
        event.message
        for event in events
        if event.kind == "log" and event.message.startswith(prefix)
    ]


@pytest.fixture
def crash_env(service_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """The services' environment on a database and a queue of this test's own, so its
    maintenance loop (with a short timeout) sees no other module's jobs; workers beat
    every 2 s against an 8 s timeout."""
    with scratch_database() as url:
        yield {
            **service_env,
            "LEAP_DATABASE_URL": url,
            "LEAP_QUEUE": f"leap-crash-{uuid.uuid4().hex[:8]}",
            "LEAP_HEARTBEAT_TIMEOUT_SECONDS": "8",
        }


def test_a_worker_killed_mid_training_is_resumed_from_its_checkpoint_on_another(
    crash_env, job_body
):
    service_env, database_url = crash_env, crash_env["LEAP_DATABASE_URL"]
    body = job_body(train={"epochs": 8, "steps_per_epoch": 6})
    headers = {"Authorization": f"Bearer {create_key('crash', database_url)}"}
    with (
        extra_api(service_env) as url,
        httpx.Client(base_url=url, headers=headers, timeout=30) as client,
    ):
        run_and_kill_and_resume(service_env, database_url, client, body)


def run_and_kill_and_resume(
    service_env: dict[str, str], database_url: str, client: httpx.Client, body: dict
) -> None:
    with celery_worker(service_env, "doomed") as (doomed, _):
        job_id = client.post("/v1/jobs", json=body).json()["id"]

        def checkpointed_epoch() -> int:
            found = logged(events_of(database_url, job_id), "checkpoint ")
            return int(re.search(r"\(epoch (\d+)\)", found[-1]).group(1)) if found else 0

        wait_for(lambda: checkpointed_epoch() >= 2, TIMEOUT, "a second checkpoint")
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(10)
        saved = checkpointed_epoch()
    killed = client.get(f"/v1/jobs/{job_id}").json()
    assert killed["status"] == "running" and killed["worker"].endswith(f":{doomed.pid}")
    assert saved < 8, "the job ended before the kill; nothing was interrupted"

    with (
        celery_worker(service_env, "survivor") as (survivor, _),
        maintenance_loop(service_env, redispatch_seconds="3600") as maintenance,
    ):
        done = wait_status(client, job_id, {"succeeded", "failed"}, timeout=TIMEOUT)
        assert done["status"] == "succeeded", done["error"]
        assert f"job {job_id}: requeued" in maintenance.read_text()

    assert done["attempt"] == 2 and done["worker"].endswith(f":{survivor.pid}")
    assert done["progress"]["global_step"] == 8 * 6
    events = events_of(database_url, job_id)
    assert states(events) == [
        ("queued", 1),
        ("running", 1),
        ("queued", 2),
        ("running", 2),
        ("succeeded", 2),
    ]
    assert re.fullmatch(
        r"worker lost: no heartbeat for \d+ s; requeued as attempt 2",
        [e.message for e in events if e.kind == "state"][2],
    )
    starts = logged(events, "training on cpu")
    assert len(starts) == 2 and "resumed" not in starts[0]
    resumed = int(re.search(r"resumed at epoch (\d+)$", starts[1]).group(1))
    assert saved <= resumed < 8  # from the last checkpoint the dead worker wrote, not 0
    # each epoch was finished once, except those the dead worker did after its checkpoint
    ends = [int(re.match(r"epoch (\d+)/8", line).group(1)) for line in logged(events, "epoch ")]
    assert ends[-(8 - resumed) :] == list(range(resumed + 1, 9))


# ---------------------------------------------------------------- database outages


@pytest.fixture(scope="module")
def outage_env(service_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """The services' environment on a database and a queue of this module's own."""
    with scratch_database() as url:
        yield {
            **service_env,
            "LEAP_DATABASE_URL": url,
            "LEAP_QUEUE": f"leap-outage-{uuid.uuid4().hex[:8]}",
        }


def outage_settings(env: dict[str, str]) -> Settings:
    return Settings(
        database_url=env["LEAP_DATABASE_URL"],
        broker_url=env["LEAP_BROKER_URL"],
        queue=env["LEAP_QUEUE"],
    )


@contextmanager
def database_down(database_url: str) -> Iterator[None]:
    """New connections refused and open ones cut, as in a PostgreSQL restart."""
    name = make_url(database_url).database
    with psycopg.connect(servers().pg_admin, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        try:
            yield
        finally:
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')


def store(env: dict[str, str], body: dict) -> Job:
    """A committed queued job, its message not yet sent."""
    spec = parse_spec(body).model_dump(mode="json")
    with session_scope(env["LEAP_DATABASE_URL"]) as session:
        return new_job(session, "outage", "outage-test", spec, [], 0)


def submit(env: dict[str, str], body: dict) -> str:
    """Store a queued job and send its message, as the API does."""
    settings = outage_settings(env)
    job = store(env, body)
    with session_factory(settings.database_url)() as session:
        dispatch_committed(session, settings, session.merge(job))
    return job.id


def row(database_url: str, job_id: str) -> Job:
    with session_scope(database_url) as session:
        return session.get(Job, job_id)


def wait_row(database_url: str, job_id: str, check: Callable[[Job], bool], what: str) -> Job:
    wait_for(lambda: check(row(database_url, job_id)), TIMEOUT, what)
    return row(database_url, job_id)


@pytest.fixture(scope="module")
def outage_worker(outage_env: dict[str, str]) -> Iterator[tuple[subprocess.Popen, Path]]:
    with celery_worker(outage_env, "outage-worker") as (process, log_path):
        yield process, log_path
        assert process.poll() is None, "the worker died"


def test_a_message_that_arrives_during_an_outage_is_leased_once_the_database_is_back(
    outage_env, outage_worker, job_body
):
    url = outage_env["LEAP_DATABASE_URL"]
    _, log_path = outage_worker
    job = store(outage_env, job_body())
    with database_down(url):
        dispatch(outage_settings(outage_env), job)
        wait_for(
            lambda: f"job {job.id}: lease: database unavailable" in log_path.read_text(),
            TIMEOUT,
            "the worker to try and retry its lease",
        )
    done = wait_row(url, job.id, lambda job: job.status in ("succeeded", "failed"), "the job")
    assert done.status == "succeeded", done.error
    assert states(events_of(url, job.id)) == [("queued", 1), ("running", 1), ("succeeded", 1)]


def test_an_outage_mid_training_loses_no_progress_and_no_event(outage_env, outage_worker, job_body):
    url = outage_env["LEAP_DATABASE_URL"]
    _, log_path = outage_worker
    job_id = submit(outage_env, job_body(train={"epochs": 6}))
    wait_row(url, job_id, lambda job: (job.global_step or 0) >= 2, "training to start")
    with database_down(url):
        time.sleep(4)  # the worker trains on; its writes fail and wait meanwhile
    done = wait_row(url, job_id, lambda job: job.status in ("succeeded", "failed"), "the job")
    assert done.status == "succeeded", done.error
    assert done.global_step == 6 * 4 and done.epoch == 6
    log = log_path.read_text()
    assert (
        re.search(rf"job {job_id}: (progress|event): database unavailable", log)
        or f"job {job_id}: progress not recorded, database unavailable" in log
    ), log[-3000:]
    events = events_of(url, job_id)
    assert states(events) == [("queued", 1), ("running", 1), ("succeeded", 1)]
    assert [
        int(re.match(r"epoch (\d+)/6", line).group(1)) for line in logged(events, "epoch ")
    ] == [1, 2, 3, 4, 5, 6]


def held_job(env: dict[str, str], body: dict, worker: str) -> Lease:
    job = store(env, body)
    held = lease(outage_settings(env), job.id, worker)
    assert held is not None and held.attempt == 1
    return held


def test_the_final_status_waits_for_the_database_and_is_written_once(outage_env, job_body):
    url = outage_env["LEAP_DATABASE_URL"]
    held = held_job(outage_env, job_body(), "finisher")
    outcome: list[bool] = []
    writer = threading.Thread(
        target=lambda: outcome.append(
            finish(
                outage_settings(outage_env),
                held,
                JobStatus.succeeded,
                "succeeded",
                events=["finished: rank1 1"],
                global_step=12,
            )
        )
    )
    with database_down(url):
        writer.start()
        time.sleep(3)
        assert writer.is_alive() and outcome == []  # still waiting for the database
    writer.join(30)
    assert outcome == [True]
    done = row(url, held.job_id)
    assert (done.status, done.global_step) == ("succeeded", 12)
    events = events_of(url, held.job_id)
    assert states(events) == [("queued", 1), ("running", 1), ("succeeded", 1)]
    assert logged(events, "finished:") == ["finished: rank1 1"]


def test_a_worker_whose_lease_was_taken_writes_nothing(outage_env, job_body):
    """The reaper requeued the job (the worker looked dead from the database's side); the
    old worker's final write must not overwrite the new attempt."""
    settings = outage_settings(outage_env)
    url = outage_env["LEAP_DATABASE_URL"]
    held = held_job(outage_env, job_body(), "partitioned")
    with session_scope(url) as session:
        job = session.scalar(select(Job).where(Job.id == held.job_id).with_for_update())
        assert recover(session, job, settings, "worker lost: test") == "requeued"
    assert finish(settings, held, JobStatus.succeeded, "succeeded") is False
    after = row(url, held.job_id)
    assert (after.status, after.attempt, after.worker) == ("queued", 2, None)
    assert states(events_of(url, held.job_id)) == [("queued", 1), ("running", 1), ("queued", 2)]


def test_a_training_worker_that_lost_its_lease_stops_and_the_new_attempt_finishes(
    outage_env, outage_worker, job_body
):
    settings = outage_settings(outage_env)
    url = outage_env["LEAP_DATABASE_URL"]
    process, log_path = outage_worker
    job_id = submit(outage_env, job_body(train={"epochs": 12}))
    wait_row(url, job_id, lambda job: (job.global_step or 0) >= 2, "training to start")
    with session_factory(url)() as session:
        job = session.scalar(select(Job).where(Job.id == job_id).with_for_update())
        assert recover(session, job, settings, "worker lost: test") == "requeued"
        session.commit()
        wait_for(
            lambda: f"job {job_id} attempt 1 is no longer held" in log_path.read_text(),
            TIMEOUT,
            "the old attempt to stop",
        )
        dispatch_committed(session, settings, job)
    done = wait_row(
        url, job_id, lambda job: job.status in ("succeeded", "failed"), "the new attempt"
    )
    assert (done.status, done.attempt) == ("succeeded", 2), done.error
    assert states(events_of(url, job_id)) == [
        ("queued", 1),
        ("running", 1),
        ("queued", 2),
        ("running", 2),
        ("succeeded", 2),
    ]
    assert process.poll() is None
