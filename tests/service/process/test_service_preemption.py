"""A worker told to stop with SIGTERM (a node drained, a spot instance reclaimed), for real:
its job checkpoints at the step boundary, goes back to the queue as preempted without
counting against ``LEAP_MAX_ATTEMPTS``, and another worker resumes it at that step.

The worker runs its job in a pool process (``--pool=prefork``, as ``python -m worker``
does: the signal the worker gets must reach the job's process) or in its own (``solo``:
the job's handler must give the signal back to Celery's, so the worker still stops), and a
job of two devices has its ranks stopped by their launcher; the job's checkpoints
are only written at its end (``checkpoint_every`` past its epochs), so the resumed run can
only have started from the preemption's own checkpoint.
"""

from __future__ import annotations

import re
import signal
import uuid
from collections.abc import Iterator

import httpx
import pytest

from jobs.admin import create_key
from tests.service.conftest import scratch_database, wait_for, wait_status
from tests.service.process.test_service_crash import events_of, logged, states
from tests.service.processes import celery_worker, extra_api

TIMEOUT = 120
EPOCHS, STEPS = 12, 6


@pytest.fixture
def preempt_env(service_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """The services' environment on a database and a queue of this test's own, with one
    attempt allowed: a preemption counted against it would fail the job."""
    with scratch_database() as url:
        yield {
            **service_env,
            "LEAP_DATABASE_URL": url,
            "LEAP_QUEUE": f"leap-preempt-{uuid.uuid4().hex[:8]}",
            "LEAP_MAX_ATTEMPTS": "1",
        }


@pytest.mark.parametrize("pool,devices", [("prefork", 1), ("solo", 1), ("prefork", 2)])
def test_a_sigterm_to_a_worker_preempts_its_job_and_another_resumes_it_at_that_step(
    preempt_env, job_body, pool, devices
):
    env, database_url = preempt_env, preempt_env["LEAP_DATABASE_URL"]
    body = job_body(
        train={"epochs": EPOCHS, "steps_per_epoch": STEPS, "checkpoint_every": 100},
        eval={"every_epochs": 0},
        resources={"devices": devices},
    )
    headers = {"Authorization": f"Bearer {create_key('preempt', database_url)}"}
    with (
        extra_api(env) as url,
        httpx.Client(base_url=url, headers=headers, timeout=30) as client,
    ):
        with celery_worker(env, "drained", pool=pool) as (drained, log):
            job_id = client.post("/v1/jobs", json=body).json()["id"]

            def steps_done() -> int:
                return client.get(f"/v1/jobs/{job_id}").json()["progress"]["global_step"] or 0

            wait_for(lambda: steps_done() >= 3, TIMEOUT, "the job's third step")
            drained.send_signal(signal.SIGTERM)
            assert drained.wait(TIMEOUT) == 0, log.read_text()[-3000:]
        preempted = client.get(f"/v1/jobs/{job_id}").json()
        assert preempted["status"] == "queued", preempted
        assert (preempted["attempt"], preempted["preemptions"]) == (2, 1)
        stopped = preempted["progress"]["global_step"]
        assert 3 <= stopped < EPOCHS * STEPS, "the job ended before the signal"

        with celery_worker(env, "spare") as (spare, _):
            done = wait_status(client, job_id, {"succeeded", "failed"}, timeout=TIMEOUT)
    assert done["status"] == "succeeded", done["error"]
    assert done["attempt"] == 2 and done["worker"].endswith(f":{spare.pid}")
    # Each of two ranks takes half of an epoch's batches (at most STEPS of them).
    per_epoch = done["progress"]["total_steps"] // EPOCHS
    assert per_epoch == STEPS if devices == 1 else 1 <= per_epoch <= STEPS
    assert done["progress"]["global_step"] == EPOCHS * per_epoch

    events = events_of(database_url, job_id)
    assert states(events) == [
        ("queued", 1),
        ("running", 1),
        ("queued", 2),
        ("running", 2),
        ("succeeded", 2),
    ]
    requeued = [e.message for e in events if e.kind == "state"][2]
    # Two ranks write a sharded checkpoint, one generation per save.
    checkpoint = r"last\.pt" if devices == 1 else r"last\.shards/\d{6}"
    found = re.fullmatch(
        rf"preempted at epoch (\d+), step (\d+) of {per_epoch}; checkpoint \S+/{checkpoint}; "
        r"requeued as attempt 2 \(a preemption: not counted against LEAP_MAX_ATTEMPTS\)",
        requeued,
    )
    assert found, requeued
    epoch, step = int(found.group(1)), int(found.group(2))
    assert epoch * per_epoch + step == stopped
    starts = logged(events, "training on cpu")
    assert len(starts) == 2
    # (A preemption at an epoch's last step resumes at that step: the epoch's end is left.)
    assert starts[1].endswith(f", resumed at epoch {epoch}, step {step}"), starts[1]
