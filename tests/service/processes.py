"""Real processes for the service tests that need ones of their own: Celery workers (to
kill, to give other settings, to watch survive faults), a second API with other settings,
and the maintenance loop."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from tests.service.conftest import ROOT, api_process, stop, wait_for

PRIORITIES = (0, 3, 6, 9)


def queue_keys(queue: str) -> list[str]:
    """The Redis lists that hold a Celery queue's messages, one per priority step."""
    return [queue + (f"\x06\x16{p}" if p else "") for p in PRIORITIES]


def drain_queue(service_env: dict[str, str]) -> None:
    """Drop the messages waiting in the session's queue: the API tests leave jobs queued
    that no worker should train."""
    broker = redis.Redis.from_url(service_env["LEAP_BROKER_URL"])
    broker.delete(*queue_keys(service_env["LEAP_QUEUE"]))


@contextmanager
def celery_worker(
    service_env: dict[str, str], name: str, pool: str = "solo", **settings: str
) -> Iterator[tuple[subprocess.Popen, Path]]:
    """A worker of one job at a time (like one GPU) on the session's queue, with
    ``LEAP_<NAME>=value`` overrides; yields the process and its log file. Stopped (or
    found already killed) on exit. ``pool``: ``solo`` (the job in the worker's own
    process) or ``prefork`` (in a child, as ``python -m worker`` runs it)."""
    env = {**service_env, **{f"LEAP_{key.upper()}": value for key, value in settings.items()}}
    log_path = Path(service_env["LEAP_HOME"]) / f"{name}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "worker.app",
                "worker",
                f"--pool={pool}",
                "--concurrency=1",
                f"--queues={env['LEAP_QUEUE']}",
                "--loglevel=INFO",
                f"--hostname={name}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(lambda: "ready." in log_path.read_text(), 90, name, process)
            yield process, log_path
        finally:
            stop(process)


@contextmanager
def extra_api(service_env: dict[str, str], **settings: str) -> Iterator[str]:
    """A second API process with ``LEAP_<NAME>=value`` overrides; yields its base URL. Its
    log must hold no traceback when it stops."""
    env = {**service_env, **{f"LEAP_{name.upper()}": value for name, value in settings.items()}}
    log_path = Path(service_env["LEAP_HOME"]) / f"api-{uuid.uuid4().hex[:8]}.log"
    with api_process(env, log_path) as url:
        yield url
    assert "Traceback" not in log_path.read_text(), log_path.read_text()


def maintenance_once(env: dict[str, str], **settings: str) -> subprocess.CompletedProcess:
    """One pass of ``python -m jobs.maintenance --once`` with ``LEAP_<NAME>=value``
    overrides; it must succeed. Its log (what it requeued, re-sent, …) is in ``stderr``."""
    run = subprocess.run(
        [sys.executable, "-m", "jobs.maintenance", "--once"],
        cwd=ROOT,
        env={**env, **{f"LEAP_{key.upper()}": value for key, value in settings.items()}},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    return run


@contextmanager
def maintenance_loop(service_env: dict[str, str], **settings: str) -> Iterator[Path]:
    """``python -m jobs.maintenance`` running every second; yields its log."""
    env = {
        **service_env,
        "LEAP_MAINTENANCE_SECONDS": "1",
        **{f"LEAP_{key.upper()}": value for key, value in settings.items()},
    }
    log_path = Path(service_env["LEAP_HOME"]) / f"maintenance-{uuid.uuid4().hex[:6]}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "jobs.maintenance"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(lambda: "pass:" in log_path.read_text(), 60, "maintenance", process)
            yield log_path
        finally:
            stop(process)
