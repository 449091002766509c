"""The service's tests run against real services on this machine: a PostgreSQL database
and a Redis db number of the session's own, a uvicorn API process, a Celery worker
process and an MLflow store in a temporary folder. Nothing is mocked and nothing outside
what the session created is touched or dropped."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
import redis

from jobs.admin import create_key
from jobs.db import engine_for
from jobs.migrate import upgrade
from leap_core.config import parse_spec
from leap_core.data.synthetic_cache import ensure_synthetic
from tests.ports import free_port
from tests.service.servers import servers
from tests.tiny import tiny_job

ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test here needs the servers (``server``). The folders follow the layers:
    ``domain/`` (jobs: states, lease, recovery), ``api/`` (the REST API, in process and as
    a uvicorn process), ``worker/`` (jobs trained by a Celery worker) and ``process/``:
    tests that start and kill whole processes (workers, a second API, a private Redis, the
    embedded stack) or run the load and fuzzing campaigns, the slowest part of the suite,
    also marked ``process``. ``-m "not server"`` is the fast subset, ``-m process`` the
    slow one."""
    here = Path(__file__).parent
    for item in items:
        path = Path(item.fspath)
        if here not in path.parents:
            continue
        item.add_marker(pytest.mark.server)
        if here / "process" in path.parents:
            item.add_marker(pytest.mark.process)
        if "worker" in getattr(item, "fixturenames", ()) and here / "worker" not in path.parents:
            raise pytest.UsageError(
                f"{item.nodeid} uses the session worker, which only tests under "
                "tests/service/worker/ may use (see the worker fixture)"
            )


TINY_JOB = tiny_job(
    name="tiny-service-test",
    train={"epochs": 2, "schedule": {"warmup_epochs": 1, "milestones": [1]}, "device": "cpu"},
    eval={"every_epochs": 0, "diagnostics": False},
)


@contextmanager
def scratch_database(migrated: bool = True) -> Iterator[str]:
    """A PostgreSQL database of the caller's own (migrated to the latest schema unless
    ``migrated`` is false), dropped on exit with every connection still open to it."""
    name = f"leap_test_{uuid.uuid4().hex[:12]}"
    running = servers()
    with psycopg.connect(running.pg_admin, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@{running.pg_host}:{running.pg_port}/{name}"
    try:
        if migrated:
            upgrade(url)
        yield url
    finally:
        engine_for(url).dispose()
        with psycopg.connect(running.pg_admin, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for the session, dropped at the end (the
    ``service_env`` fixture migrates it)."""
    with scratch_database(migrated=False) as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """An empty Redis db number, claimed with a marker key, flushed at the end."""
    marker = f"leap-test-claim-{uuid.uuid4().hex}"
    host = servers().redis_url
    for number in range(15, 0, -1):
        client = redis.Redis.from_url(f"{host}/{number}")
        if client.dbsize() == 0 and client.set(marker, "1", nx=True):
            if client.dbsize() == 1:
                break
            client.delete(marker)
    else:
        pytest.fail("no empty Redis database number (1-15) for the tests")
    yield f"{host}/{number}"
    if client.exists(marker):  # still ours: nobody else wrote a claim in between
        client.flushdb()


@pytest.fixture(scope="session")
def service_env(
    tmp_path_factory: pytest.TempPathFactory, pg_url: str, redis_url: str
) -> dict[str, str]:
    """Environment of the API and worker processes: everything under a temporary home."""
    home = tmp_path_factory.mktemp("leap-home")
    upgrade(pg_url)
    return {
        **os.environ,
        "LEAP_HOME": str(home),
        "LEAP_DATABASE_URL": pg_url,
        "LEAP_BROKER_URL": redis_url,
        "LEAP_MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "LEAP_MLFLOW_UI_URL": "http://mlflow.test:5000",
        "LEAP_RUNS_DIR": str(home / "jobs"),
        "LEAP_DATA_ROOTS": str(home / "data"),
        "LEAP_QUEUE": f"leap-test-{uuid.uuid4().hex[:8]}",
        "LEAP_HEARTBEAT_SECONDS": "0.5",
        "LEAP_MAX_DEVICES_PER_JOB": "2",
        "MLFLOW_TRACKING_URI": "",
        "PYTHONPATH": str(ROOT),
    }


@pytest.fixture(scope="session")
def tiny_root(service_env: dict[str, str]) -> str:
    """The tiny synthetic dataset, generated once inside the allowed data root."""
    root = Path(service_env["LEAP_HOME"]) / "data" / "tiny"
    spec = parse_spec({**TINY_JOB, "dataset": {**TINY_JOB["dataset"], "root": str(root)}})
    return str(ensure_synthetic(spec.dataset))


def wait_for(
    check: Callable[[], bool], timeout: float, what: str, process: subprocess.Popen | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {process.returncode}")
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{what}: not within {timeout}s")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@contextmanager
def api_process(env: dict[str, str], log_path: Path) -> Iterator[str]:
    """A uvicorn process serving the API with ``env`` on a free loopback port, its output
    in ``log_path``; yields its base URL once it answers."""
    port = free_port()
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "api.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for(
                lambda: httpx.get(f"{url}/healthz").status_code == 200,
                60,
                f"API on port {port}",
                process,
            )
            yield url
        finally:
            stop(process)


@pytest.fixture(scope="session")
def api_url(service_env: dict[str, str]) -> Iterator[str]:
    """The session's API process."""
    with api_process(service_env, Path(service_env["LEAP_HOME"]) / "api.log") as url:
        yield url


@pytest.fixture(scope="module")
def worker(service_env: dict[str, str], api_url: str) -> Iterator[subprocess.Popen]:
    """A real Celery worker process (solo pool: one job at a time, like one GPU). The
    queue is emptied first: API tests leave jobs queued that no worker should train.

    Module-scoped: it consumes the session's queue only while a module that asks for it
    runs, whatever order the modules run in, so the modules that start workers of their
    own on the same queue (recovery, faults, first use) and the API tests that count what
    waits in it never share the queue with it. A test of such a module that needs its
    jobs left queued submits them to an API whose queue nobody consumes (``idle_api``)."""
    queue = service_env["LEAP_QUEUE"]
    broker = redis.Redis.from_url(service_env["LEAP_BROKER_URL"])
    broker.delete(*[queue + (f"\x06\x16{p}" if p else "") for p in (0, 3, 6, 9)])
    log_path = Path(service_env["LEAP_HOME"]) / f"worker-{uuid.uuid4().hex[:6]}.log"
    log = open(log_path, "w")  # noqa: SIM115
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker.app",
            "worker",
            "--pool=solo",
            "--concurrency=1",
            f"--queues={service_env['LEAP_QUEUE']}",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=ROOT,
        env=service_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: "ready." in log_path.read_text(), 90, "worker", process)
        yield process
    finally:
        stop(process)
        log.close()


@dataclass(frozen=True)
class IdleApi:
    """An API process whose queue no worker consumes: jobs submitted to it stay queued
    whichever workers run, and its queue can be counted."""

    url: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def idle_api(service_env: dict[str, str]) -> Iterator[IdleApi]:
    env = {**service_env, "LEAP_QUEUE": f"leap-idle-{uuid.uuid4().hex[:8]}"}
    with api_process(env, Path(env["LEAP_HOME"]) / f"api-{env['LEAP_QUEUE']}.log") as url:
        yield IdleApi(url, env)


@pytest.fixture(scope="session")
def database_url(service_env: dict[str, str]) -> str:
    return service_env["LEAP_DATABASE_URL"]


@pytest.fixture
def make_client(api_url: str, database_url: str) -> Iterator[Callable[..., httpx.Client]]:
    """``make_client()`` → an httpx client with a fresh API key of a fresh owner, on the
    session's API (or on ``url``: ``make_client(url=idle_api.url)``)."""
    clients = []

    def build(owner: str | None = None, url: str | None = None) -> httpx.Client:
        token = create_key(owner or f"owner-{uuid.uuid4().hex[:8]}", database_url)
        client = httpx.Client(
            base_url=url or api_url, timeout=30, headers={"Authorization": f"Bearer {token}"}
        )
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()


@pytest.fixture
def job_body(tiny_root: str) -> Callable[..., dict]:
    """The tiny job as a POST body, with sections' fields replaced: ``job_body(train={...})``."""

    def build(**sections: dict) -> dict:
        body = {**TINY_JOB, "dataset": {**TINY_JOB["dataset"], "root": tiny_root}}
        for section, fields in sections.items():
            body[section] = (
                {**body.get(section, {}), **fields} if isinstance(fields, dict) else fields
            )
        return body

    return build


def wait_status(client: httpx.Client, job_id: str, statuses: set[str], timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        time.sleep(0.25)
    raise TimeoutError(f"job {job_id} still {job['status']} after {timeout}s, not {statuses}")
