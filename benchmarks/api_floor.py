"""The job API against its floor: the same requests served by a minimal service that does
only the work each one needs, timed side by side with ``wrk``.

The floor is a FastAPI app in this file (``uvicorn api_floor:app --app-dir benchmarks``)
on the same stack: SQLAlchemy on PostgreSQL through psycopg, Celery on Redis. Per request
it does only the essential work, honestly:

* find the API key by its 12-character prefix (unrevoked) and compare the SHA-256 of the
  presented token with the stored one in constant time (``jobs.keys``' scheme), on every
  request, with no cache;
* ``POST /v1/jobs``: validate the body as the API's own ``JobCreate`` (the ``JobSpec`` of
  ``leap_core.config``), insert one ``jobs`` row and one ``job_events`` row in one
  transaction, send the ``leap.train`` task with the job id to the same queue on the same
  broker through Celery (its producer pool), answer 201 with the job as JSON;
* ``GET /v1/jobs/{id}``: read the owner's row and answer it as JSON.

Nothing else: no rate limit, idempotency keys, admission control, path confinement,
storable-value check, dispatch stamp or response model. Both servers run with the same
uvicorn processes and options (:data:`loopback.UVICORN_OPTIONS`), against one database
and Redis db of the benchmark's own (dropped and flushed at the end). The project's
per-key submission rate is raised out of the way (``LEAP_SUBMIT_RATE_PER_MINUTE``), so
its bucket is still taken on every POST but never refuses one.

Saturated throughput: ``wrk`` (C, keep-alive) at ``--connections`` connections for
``--duration`` seconds per run, the servers alternating within each of ``--rounds`` rounds
(the first server of a round alternates too), counting every non-2xx reply in a Lua
``response()`` hook. The ratio is the median over rounds of the project's req/s over the
floor's in the same round. Latency at a fixed offered load: an open-loop asyncio client
(httpx) sends requests on a fixed schedule at ``--rate-share`` of the lower saturated
rate, whatever the replies do, and times each from its scheduled start (so queueing is
not hidden); the same rate for both servers.

    .venv/bin/python benchmarks/api_floor.py [--rounds 3] [--connections 32] [--duration 10]

Goals (the performance issue, item 2): GET /v1/jobs/{id} ≥ 0.9× the floor, POST /v1/jobs
≥ 0.6×, with 0 non-2xx replies.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import httpx
from celery import Celery
from fastapi import FastAPI, Header, HTTPException, Response
from sqlalchemy import Connection, create_engine, insert, select

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loopback import ROOT, TINY, loopback, percentile, start_uvicorn, stop, wait_http

sys.path.insert(0, str(ROOT))

from api.schemas.jobs import JobCreate
from jobs.admin import create_key
from jobs.broker import TRAIN_TASK
from jobs.keys import hash_token
from jobs.migrate import upgrade
from jobs.models import ApiKey, Job, JobEvent, new_id, utcnow
from leap_core.run_names import run_name

GOALS = {"GET": 0.9, "POST": 0.6}
#: What a pipeline would send: the tiny job, its data root relative to LEAP_DATA_ROOTS.
BODY: dict[str, Any] = {
    **TINY,
    "dataset": {**TINY["dataset"], "root": "tiny"},
    "tags": ["bench"],
}


# --- the floor service --------------------------------------------------------------

SHOWN = ("id", "name", "status", "tags", "priority", "attempt", "worker", "created_at")
SHOWN += ("updated_at", "started_at", "finished_at", "heartbeat_at", "error")
PROGRESS = ("epoch", "epochs", "step", "global_step", "total_steps", "eta_seconds")


@lru_cache(maxsize=1)
def _floor_state() -> tuple[Any, Celery, str]:
    """The engine (the project's pool sizes), a Celery producer app and the queue."""
    engine = create_engine(os.environ["LEAP_DATABASE_URL"], pool_size=32, max_overflow=8)
    celery = Celery("leap-floor", broker=os.environ["LEAP_BROKER_URL"], set_as_current=False)
    celery.conf.update(
        broker_transport_options={"visibility_timeout": 7 * 24 * 3600},
        task_ignore_result=True,
        broker_pool_limit=50,
    )
    return engine, celery, os.environ["LEAP_QUEUE"]


def _owner(connection: Connection, authorization: str | None) -> str:
    """The key's owner: found by prefix, its hash compared in constant time."""
    token = (authorization or "").removeprefix("Bearer ")
    digest = hash_token(token)
    rows = connection.execute(
        select(ApiKey.key_hash, ApiKey.owner).where(
            ApiKey.prefix == token[:12], ApiKey.revoked_at.is_(None)
        )
    )
    for key_hash, owner in rows:
        if hmac.compare_digest(key_hash, digest):
            return owner
    raise HTTPException(401, "missing or invalid API key")


def _json(row: dict[str, Any]) -> bytes:
    """The job with the fields the API shows, serialised once."""
    base = f"/v1/jobs/{row['id']}"
    step, total = row.get("global_step"), row.get("total_steps")
    run_id = row.get("mlflow_run_id")
    body = {
        **{name: row.get(name) for name in SHOWN},
        "progress": {
            **{name: row.get(name) for name in PROGRESS},
            "fraction": step / total if step is not None and total else None,
        },
        "metrics": row["metrics"],
        "mlflow": {"run_id": run_id, "url": run_id and f"http://127.0.0.1:5000/#/runs/{run_id}"},
        "links": {
            "self": base,
            "events": f"{base}/events",
            "cancel": f"{base}/cancel",
            "retry": f"{base}/retry",
        },
        "spec": row["spec"],
    }
    return json.dumps(body, default=datetime.isoformat).encode()


def floor_app() -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    jobs = Job.__table__

    @app.get("/v1/jobs/{job_id}")
    def read(job_id: str, authorization: Annotated[str | None, Header()] = None) -> Response:
        engine, _, _ = _floor_state()
        with engine.connect() as connection:
            owner = _owner(connection, authorization)
            row = (
                connection.execute(select(jobs).where(jobs.c.id == job_id, jobs.c.owner == owner))
                .mappings()
                .first()
            )
        if row is None:
            raise HTTPException(404, "not found")
        return Response(_json(dict(row)), media_type="application/json")

    @app.post("/v1/jobs", status_code=201)
    def submit(body: JobCreate, authorization: Annotated[str | None, Header()] = None) -> Response:
        engine, celery, queue = _floor_state()
        spec = JobCreate.training_spec(body.model_dump(mode="json"))
        now = utcnow()
        row = {
            "id": new_id(),
            "name": (body.name or run_name(body))[:200],
            "status": "queued",
            "tags": body.tags,
            "priority": body.priority,
            "spec": spec,
            "attempt": 1,
            "epochs": body.train.epochs,
            "created_at": now,
            "updated_at": now,
            "metrics": {},
        }
        with engine.begin() as connection:
            owner = _owner(connection, authorization)
            connection.execute(insert(jobs).values(owner=owner, **row))
            connection.execute(
                insert(JobEvent.__table__).values(
                    job_id=row["id"],
                    at=now,
                    kind="state",
                    to_status="queued",
                    attempt=1,
                    message="submitted",
                )
            )
        celery.send_task(TRAIN_TASK, args=[row["id"]], queue=queue, priority=9 - body.priority)
        return Response(
            _json(row),
            status_code=201,
            media_type="application/json",
            headers={"Location": f"/v1/jobs/{row['id']}"},
        )

    @app.get("/readyz")
    def ready() -> dict[str, str]:
        return {"status": "ready"}

    return app


def __getattr__(name: str) -> Any:
    # ``uvicorn api_floor:app`` builds the app on first access, after the environment is set.
    if name == "app":
        return floor_app()
    raise AttributeError(name)


# --- the load -----------------------------------------------------------------------

#: wrk's Lua: the request, a count of non-2xx replies per thread, one result line.
WRK_SCRIPT = """
wrk.method = "%(method)s"
wrk.path = "%(path)s"
wrk.headers["Authorization"] = "Bearer %(token)s"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[%(body)s]==]
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) non2xx = 0 end
function response(status, headers, body)
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
end
function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do bad = bad + thread:get("non2xx") end
  local e = summary.errors
  io.write(string.format("RESULT %%d %%d %%d %%d %%d %%d\\n", summary.requests,
    summary.duration, bad, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout))
end
"""


@dataclass
class Run:
    requests_per_s: float
    non_2xx: int
    socket_errors: int
    p50_ms: float
    p99_ms: float


def wrk(url: str, script: Path, connections: int, seconds: float) -> Run:
    out = subprocess.run(
        [
            "wrk",
            "-t",
            "2",
            "-c",
            str(connections),
            "-d",
            f"{round(seconds)}s",
            "--timeout",
            "30s",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("RESULT "))
    requests, micros, bad, p50, p99, errors = map(int, line.split()[1:])
    return Run(requests / (micros / 1e6), bad, errors, p50 / 1000, p99 / 1000)


async def open_loop(url: str, method: str, path: str, token: str, rate: float, seconds: float):
    """Requests sent on a fixed schedule (``rate`` a second) whatever the replies do; each
    timed from its scheduled start. Returns (latencies in ms, non-2xx count)."""
    latencies: list[float] = []
    bad = 0
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as http:

        async def one(due: float) -> None:
            nonlocal bad
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            response = await http.request(method, path, json=BODY if method == "POST" else None)
            latencies.append((time.perf_counter() - due) * 1000)
            bad += not 200 <= response.status_code < 300

        start = time.perf_counter() + 0.2
        count = int(rate * seconds)
        await asyncio.gather(*(one(start + n / rate) for n in range(count)))
    return latencies, bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--api-workers", type=int, default=1, help="uvicorn processes each")
    parser.add_argument(
        "--rate-share", type=float, default=0.25, help="fixed load as a share of saturation"
    )
    parser.add_argument("--rate-seconds", type=float, default=10)
    args = parser.parse_args()

    processes: list[subprocess.Popen] = []
    with (
        loopback(LEAP_SUBMIT_RATE_PER_MINUTE=str(10**9)) as stack,
        tempfile.TemporaryDirectory(prefix="leap-floor-") as scratch,
    ):
        try:
            upgrade(stack.database_url)
            token = create_key("bench", stack.database_url)
            urls = {"project": "http://127.0.0.1:18771", "floor": "http://127.0.0.1:18772"}
            for app, (server, url) in zip(
                ("api.main:app", "api_floor:app"), urls.items(), strict=True
            ):
                app_dir = ROOT if server == "project" else ROOT / "benchmarks"
                port = int(url.rsplit(":", 1)[1])
                processes.append(start_uvicorn(app, port, args.api_workers, stack.env, app_dir))
            for process, url in zip(processes, urls.values(), strict=True):
                wait_http(f"{url}/readyz", process)
            headers = {"Authorization": f"Bearer {token}"}
            created = httpx.post(f"{urls['project']}/v1/jobs", json=BODY, headers=headers)
            created.raise_for_status()
            job_id = created.json()["id"]
            check = httpx.get(f"{urls['floor']}/v1/jobs/{job_id}", headers=headers)
            check.raise_for_status()
            paths = {"GET": f"/v1/jobs/{job_id}", "POST": "/v1/jobs"}
            scripts = {}
            for method, path in paths.items():
                scripts[method] = Path(scratch) / f"{method.lower()}.lua"
                scripts[method].write_text(
                    WRK_SCRIPT
                    % {
                        "method": method,
                        "path": path,
                        "token": token,
                        "body": json.dumps(BODY) if method == "POST" else "",
                    }
                )
            measure(args, urls, token, paths, scripts)
        finally:
            for process in processes:
                stop(process)


def measure(
    args: argparse.Namespace,
    urls: dict[str, str],
    token: str,
    paths: dict[str, str],
    scripts: dict[str, Path],
) -> None:
    order = list(urls)
    for method in paths:  # warm-up: imports, pools, caches
        for server in order:
            wrk(urls[server] + paths[method], scripts[method], args.connections, 2)
    runs: dict[tuple[str, str], list[Run]] = {}
    for round_ in range(args.rounds):
        servers = order if round_ % 2 == 0 else order[::-1]
        for method in paths:
            for server in servers:
                run = wrk(
                    urls[server] + paths[method], scripts[method], args.connections, args.duration
                )
                runs.setdefault((method, server), []).append(run)
                print(
                    f"  round {round_ + 1} {method:4s} {server:7s} {run.requests_per_s:7.1f} req/s",
                    flush=True,
                )

    print(
        f"\njob API vs its floor: wrk, {args.connections} connections, 2 threads, "
        f"{args.duration:g} s a run, {args.rounds} rounds alternating; {args.api_workers} "
        f"uvicorn process(es) each, same options; {os.cpu_count()} CPU cores shared with "
        f"the client, PostgreSQL and Redis"
    )
    header = (
        f"{'endpoint':18s} {'server':8s} {'req/s':>8s} {'non-2xx':>8s} {'errors':>7s} "
        f"{'p50 ms':>7s} {'p99 ms':>7s}   {'ratio':>5s} (goal)"
    )
    print(header)
    print("-" * len(header))
    saturated: dict[str, float] = {}
    for method, label in (("GET", "GET /v1/jobs/{id}"), ("POST", "POST /v1/jobs")):
        project, floor = runs[(method, "project")], runs[(method, "floor")]
        ratio = statistics.median(
            p.requests_per_s / f.requests_per_s for p, f in zip(project, floor, strict=True)
        )
        for server, these in (("project", project), ("floor", floor)):
            tail = ""
            if server == "project":
                met = "met" if ratio >= GOALS[method] else "NOT met"
                tail = f"   {ratio:5.2f} (≥ {GOALS[method]}: {met})"
            print(
                f"{label:18s} {server:8s} "
                f"{statistics.median(r.requests_per_s for r in these):8.1f} "
                f"{sum(r.non_2xx for r in these):8d} {sum(r.socket_errors for r in these):7d} "
                f"{statistics.median(r.p50_ms for r in these):7.1f} "
                f"{statistics.median(r.p99_ms for r in these):7.1f}{tail}"
            )
        saturated[method] = min(
            statistics.median(r.requests_per_s for r in project),
            statistics.median(r.requests_per_s for r in floor),
        )
    print("(req/s, p50, p99: medians over rounds; non-2xx and socket errors: totals)")

    print(
        f"\nfixed offered load (open-loop asyncio client, httpx; {args.rate_share:.0%} of the "
        f"lower saturated rate, {args.rate_seconds:g} s each, servers alternating):"
    )
    for method, label in (("GET", "GET /v1/jobs/{id}"), ("POST", "POST /v1/jobs")):
        rate = max(1.0, round(saturated[method] * args.rate_share))
        for server in order if method == "GET" else order[::-1]:
            latencies, bad = asyncio.run(
                open_loop(urls[server], method, paths[method], token, rate, args.rate_seconds)
            )
            print(
                f"  {label:18s} {server:8s} at {rate:4.0f} req/s: p50 "
                f"{statistics.median(latencies):6.1f} ms  p99 {percentile(latencies, 99):6.1f} ms"
                f"  non-2xx {bad}"
            )


if __name__ == "__main__":
    main()
