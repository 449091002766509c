"""Load on the job API: 200 concurrent clients submit 2,000 jobs, then read them back; and
the time from a job's dispatch to its first training step on an idle worker.

Runs against the real thing on loopback: a PostgreSQL database and a Redis db number of
its own (created here, dropped or flushed at the end), a uvicorn API process, and for the
second part a Celery worker process. No worker consumes during the load, so every job
stays queued and can be counted in Redis. Prints the figures; asserts nothing about time.

    .venv/bin/python benchmarks/api_load.py [--clients 200] [--jobs 2000] [--api-workers 2]

Targets (issue 7): every job stored exactly once, p99 POST /v1/jobs < 100 ms, p99
GET /v1/jobs/{id} < 30 ms, dispatch → first step (excluding data loading) < 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loopback import (
    ROOT,
    TINY,
    Loopback,
    loopback,
    percentile,
    start_uvicorn,
    stop,
    wait_http,
)

sys.path.insert(0, str(ROOT))

from mlflow.tracking import MlflowClient

from jobs.admin import create_key
from jobs.db import session_scope
from jobs.migrate import upgrade
from jobs.models import Job, JobEvent
from leap_core.config import parse_spec
from leap_core.data.synthetic_cache import ensure_synthetic


async def load(url: str, token: str, body: dict, clients: int, jobs: int):
    """Each client submits its share of jobs (with an Idempotency-Key), then all read them."""
    post_times: list[float] = []
    get_times: list[float] = []
    ids: list[str] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as http:

        async def submitter(index: int) -> None:
            for n in range(index, jobs, clients):
                started = time.perf_counter()
                response = await http.post(
                    "/v1/jobs",
                    json={**body, "name": f"load-{n}"},
                    headers={"Idempotency-Key": f"load-{n}"},
                )
                post_times.append(time.perf_counter() - started)
                response.raise_for_status()
                ids.append(response.json()["id"])

        async def reader(index: int) -> None:
            for n in range(index, len(ids), clients):
                started = time.perf_counter()
                response = await http.get(f"/v1/jobs/{ids[n]}")
                get_times.append(time.perf_counter() - started)
                response.raise_for_status()

        began = time.perf_counter()
        await asyncio.gather(*(submitter(i) for i in range(clients)))
        submit_seconds = time.perf_counter() - began
        began = time.perf_counter()
        await asyncio.gather(*(reader(i) for i in range(clients)))
        read_seconds = time.perf_counter() - began
    return ids, post_times, get_times, submit_seconds, read_seconds


def queued_messages(client: redis.Redis, queue: str) -> int:
    return sum(client.llen(queue + (f"\x06\x16{p}" if p else "")) for p in (0, 3, 6, 9))


def first_step_latency(env: dict, url: str, token: str, body: dict, runs: int) -> list[dict]:
    """Start a worker, let it go idle, then time dispatch → lease → set-up → first step."""
    log_path = Path(env["LEAP_HOME"]) / "worker.log"
    with open(log_path, "w") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "worker", "--concurrency=1"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while " ready." not in log_path.read_text():
            if worker.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"worker did not start; see {log_path}")
            time.sleep(0.2)
        time.sleep(3)  # idle
        figures = []
        http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"})
        for _ in range(runs):
            job_id = http.post("/v1/jobs", json=body).json()["id"]
            deadline = time.monotonic() + 180
            while http.get(f"/v1/jobs/{job_id}").json()["status"] not in (
                "succeeded",
                "failed",
                "cancelled",
            ):
                if time.monotonic() > deadline:
                    raise SystemExit(f"job {job_id} did not finish; see {log_path}")
                time.sleep(0.5)
            with session_scope(env["LEAP_DATABASE_URL"]) as session:
                job = session.get(Job, job_id)
                events = session.scalars(
                    select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
                ).all()
                leased = next(e.at for e in events if e.to_status == "running")
                set_up = next(e.at for e in events if e.message.startswith("training on"))
                first = next(e.at for e in events if e.message.startswith("first step"))
                figures.append(
                    {
                        "status": job.status,
                        "dispatch_to_lease": (leased - job.dispatched_at).total_seconds(),
                        "setup_incl_data": (set_up - leased).total_seconds(),
                        "to_first_step": (first - job.dispatched_at).total_seconds(),
                    }
                )
            time.sleep(2)  # idle again (the worker replaces its child after each job)
        return figures
    finally:
        worker.terminate()
        worker.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--api-workers", type=int, default=2)
    parser.add_argument("--first-step-runs", type=int, default=3)
    args = parser.parse_args()

    port = 18765
    processes: list[subprocess.Popen] = []
    with loopback() as stack:
        try:
            run(args, stack, port, processes)
        finally:
            for process in processes:
                stop(process)


def run(
    args: argparse.Namespace, stack: Loopback, port: int, processes: list[subprocess.Popen]
) -> None:
    """Everything but the set-up; the API process goes into ``processes`` to be stopped."""
    database_url, broker, env, home = stack.database_url, stack.broker, stack.env, stack.home
    upgrade(database_url)
    token = create_key("bench", database_url)
    MlflowClient(env["LEAP_MLFLOW_TRACKING_URI"]).search_experiments()  # store exists
    root = home / "data" / "tiny"
    ensure_synthetic(
        parse_spec({**TINY, "dataset": {**TINY["dataset"], "root": str(root)}}).dataset
    )
    body = {**TINY, "dataset": {**TINY["dataset"], "root": str(root)}}
    api = start_uvicorn("api.main:app", port, args.api_workers, env)
    processes.append(api)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/readyz", api)
    httpx.post(f"{url}/v1/jobs", json=body, headers={"Authorization": f"Bearer {token}"})

    ids, posts, gets, submit_s, read_s = asyncio.run(
        load(url, token, body, args.clients, args.jobs)
    )
    with session_scope(database_url) as session:
        stored = session.scalar(
            select(func.count()).select_from(Job).where(Job.name.like("load-%"))
        )
        distinct = session.scalar(
            select(func.count(func.distinct(Job.idempotency_key))).where(Job.name.like("load-%"))
        )
    queued = queued_messages(broker, "bench") - 1  # minus the warm-up job
    once = stored == distinct == len(set(ids)) == queued == args.jobs
    print(
        f"API load: {args.clients} concurrent clients, {args.jobs} jobs, "
        f"{args.api_workers} uvicorn workers, PostgreSQL + Redis on loopback"
    )
    print(
        f"  stored {stored} rows ({distinct} distinct keys), {len(set(ids))} distinct "
        f"ids returned, {queued} messages queued: "
        f"{'exactly once' if once else 'MISMATCH'}"
    )
    for label, times, seconds in [
        ("POST /v1/jobs", posts, submit_s),
        ("GET /v1/jobs/{id}", gets, read_s),
    ]:
        ms = [t * 1000 for t in times]
        print(
            f"  {label:18s} p50 {statistics.median(ms):7.1f} ms  p99 "
            f"{percentile(ms, 99):7.1f} ms  max {max(ms):7.1f} ms  "
            f"{len(ms) / seconds:7.0f} req/s"
        )
    for key in [k for k in broker.scan_iter("bench*")]:
        broker.delete(key)  # the load's jobs must not reach the worker below
    figures = first_step_latency(env, url, token, body, args.first_step_runs)
    print("dispatch → first training step on an idle worker (tiny job, data on disk):")
    for n, f in enumerate(figures, 1):
        print(
            f"  run {n}: {f['status']}; dispatch→lease {f['dispatch_to_lease']:.2f} s, "
            f"lease→trainer ready (incl. data loading) {f['setup_incl_data']:.2f} s, "
            f"dispatch→first step {f['to_first_step']:.2f} s"
        )


if __name__ == "__main__":
    main()
