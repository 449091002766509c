"""Set-up shared by the benchmarks that load the service on loopback (``api_load.py``,
``api_floor.py``): a PostgreSQL database and a Redis db number of their own, the
environment the API reads, and uvicorn processes.

Everything made here is removed at the end (the database dropped, the Redis db flushed),
and only what was made here: the database has a fresh random name and the Redis db number
is claimed by setting a marker in an empty one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = os.environ.get("LEAP_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
#: Options every API process of a benchmark runs with (the same for every server compared).
UVICORN_OPTIONS = ["--log-level", "warning", "--no-access-log"]


#: The tiny synthetic job both API benchmarks submit: a small but complete spec.
TINY: dict[str, Any] = {
    "dataset": {
        "format": "synthetic",
        "synthetic": {
            "identities": 24,
            "test_identities": 8,
            "cameras": 3,
            "head": 4,
            "tail_samples": 3,
            "height": 32,
            "width": 16,
            "seed": 0,
        },
        "image_size": [32, 16],
    },
    "model": {"backbone": "tiny_cnn", "embedding_dim": 32, "width": 8},
    "method": {"head": {"kind": "cosface"}, "leap": {"mode": "full", "cloud_start_epoch": 1}},
    "train": {
        "epochs": 2,
        "sampler": {"identities": 4, "instances": 4},
        "num_workers": 0,
        "steps_per_epoch": 4,
        "schedule": {"warmup_epochs": 1, "milestones": [1]},
    },
    "eval": {"every_epochs": 0, "diagnostics": False},
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def claim_redis_db() -> tuple[redis.Redis, str]:
    """An empty Redis db number, claimed with a marker so two benchmarks never share one."""
    marker = f"leap-bench-claim-{uuid.uuid4().hex}"
    for number in range(15, 0, -1):
        client = redis.Redis.from_url(f"redis://127.0.0.1:6379/{number}")
        if client.dbsize() == 0 and client.set(marker, "1", nx=True) and client.dbsize() == 1:
            return client, f"redis://127.0.0.1:6379/{number}"
    raise SystemExit("no empty Redis db number for the benchmark")


def wait_http(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"process exited with {process.returncode}")
        try:
            if httpx.get(url).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} not up within {timeout}s")


@dataclass
class Loopback:
    """What :func:`loopback` made: the URLs, the Redis client and the API's environment."""

    database_url: str
    broker: redis.Redis
    broker_url: str
    home: Path
    env: dict[str, str]


@contextmanager
def loopback(queue: str = "bench", **extra_env: str) -> Iterator[Loopback]:
    """A fresh database and Redis db (dropped and flushed on exit) and the ``LEAP_*``
    environment pointing at them; ``extra_env`` adds or overrides variables."""
    name = f"leap_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    broker = None
    try:
        broker, broker_url = claim_redis_db()
        home = Path(tempfile.mkdtemp(prefix="leap-bench-"))
        database_url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        env = {
            **os.environ,
            "LEAP_HOME": str(home),
            "LEAP_DATABASE_URL": database_url,
            "LEAP_BROKER_URL": broker_url,
            "LEAP_QUEUE": queue,
            "LEAP_MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
            "LEAP_DATA_ROOTS": str(home / "data"),
            "LEAP_RUNS_DIR": str(home / "jobs"),
            "PYTHONPATH": str(ROOT),
            "MLFLOW_DISABLE_TELEMETRY": "true",
            **extra_env,
        }
        yield Loopback(database_url, broker, broker_url, home, env)
    finally:
        if broker is not None:
            broker.flushdb()
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_uvicorn(
    app: str, port: int, workers: int, env: dict[str, str], app_dir: Path = ROOT
) -> subprocess.Popen:
    """``uvicorn app`` on 127.0.0.1:port with :data:`UVICORN_OPTIONS`."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--app-dir",
            str(app_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            *UVICORN_OPTIONS,
        ],
        cwd=ROOT,
        env=env,
    )


def stop(process: subprocess.Popen | None) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        process.wait(30)
