"""Fair order between owners with a real worker: while owner A's sweep of three jobs holds
the only worker, owner B submits one job; B's job starts as soon as the worker frees up,
ahead of A's remaining cells, and the queue positions the API shows say so beforehand. The
same holds when the worker is SIGKILLed mid-job and a new one takes over."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest

from jobs.admin import create_key
from tests.service.conftest import scratch_database, wait_status
from tests.service.processes import celery_worker, extra_api, maintenance_loop

TIMEOUT = 180


@pytest.fixture
def fair_env(service_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """The services' environment on a database and a queue of this test's own."""
    with scratch_database() as url:
        yield {
            **service_env,
            "LEAP_DATABASE_URL": url,
            "LEAP_QUEUE": f"leap-fair-{uuid.uuid4().hex[:8]}",
            "LEAP_HEARTBEAT_TIMEOUT_SECONDS": "8",
        }


def at(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


def finish_all(clients: list[tuple[httpx.Client, str]]) -> list[dict]:
    return [
        wait_status(client, job, {"succeeded", "failed"}, timeout=TIMEOUT)
        for client, job in clients
    ]


@pytest.mark.parametrize("kill", [False, True], ids=["plain", "worker-killed"])
def test_a_later_owners_job_starts_before_the_busy_owners_remaining_cells(fair_env, job_body, kill):
    env = fair_env
    body = job_body(train={"epochs": 3}, eval={"every_epochs": 0})
    with extra_api(env) as url:
        a, b = (
            httpx.Client(
                base_url=url,
                headers={"Authorization": f"Bearer {create_key(owner, env['LEAP_DATABASE_URL'])}"},
                timeout=30,
            )
            for owner in ("owner-a", "owner-b")
        )
        with celery_worker(env, "fair-first") as (worker, _):
            sweep = [a.post("/v1/jobs", json=body).json()["id"] for _ in range(3)]
            wait_status(a, sweep[0], {"running"}, timeout=TIMEOUT)
            late = b.post("/v1/jobs", json=body).json()["id"]
            shown = {
                job: client.get(f"/v1/jobs/{job}").json()["queue"]
                for client, job in [(b, late), (a, sweep[1]), (a, sweep[2])]
            }
            order = [(a, sweep[0]), (b, late), (a, sweep[1]), (a, sweep[2])]
            if not kill:
                finished = finish_all(order)
            else:  # the worker dies in A's first job; a new one and the reaper take over
                worker.send_signal(signal.SIGKILL)
                worker.wait(30)
        if kill:
            with (
                celery_worker(env, "fair-second"),
                maintenance_loop(env, redispatch_seconds="3600"),
            ):
                finished = finish_all(order)
    a.close()
    b.close()
    assert [job["status"] for job in finished] == ["succeeded"] * 4, [
        job["error"] for job in finished
    ]
    assert shown == {
        late: {"position": 0, "held": None},
        sweep[1]: {"position": 1, "held": None},
        sweep[2]: {"position": 2, "held": None},
    }
    first, by_b, second, third = finished
    # One worker, one job at a time: B's job starts when the worker is next free (after A's
    # first ended, or on the new worker), before A's second and third.
    assert at(by_b["started_at"]) < at(second["started_at"]) < at(third["started_at"])
    if kill:
        assert first["attempt"] == 2  # taken back by the reaper, and run again
    else:
        assert at(first["finished_at"]) <= at(by_b["started_at"])
    print(
        f"{'killed' if kill else 'plain'}: B started "
        f"{(at(by_b['started_at']) - at(first['started_at'])).total_seconds():.1f} s after A's "
        f"first (last) start, A's second "
        f"{(at(second['started_at']) - at(by_b['started_at'])).total_seconds():.1f} s after B; "
        f"positions {[place['position'] for place in shown.values()]}"
    )
