"""Recovery against the real services: the reaper requeues a job whose worker stopped
heart-beating (and fails it after the last attempt), the reconciler re-sends queued jobs
whose broker messages are gone, and a duplicate message for a job that is running or
finished changes nothing.

Lost workers and lost messages are made the way they happen: a job row left ``running``
by a worker that no longer beats (written through the state machine, with its heartbeat
two hours old), and the queue's Redis keys deleted as a Redis restart would. The passes
run with a one-hour timeout and grace, so they act only on those two-hour-old rows and
never on jobs of other tests in the session.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from sqlalchemy import select, update

from jobs.broker import TRAIN_TASK
from jobs.db import session_scope
from jobs.dispatch import producer
from jobs.maintenance import run_pass
from jobs.migrate import upgrade
from jobs.models import Job, JobEvent, JobStatus, utcnow
from jobs.recovery import due_for_redispatch, reap_stale
from jobs.service import new_job
from jobs.settings import Settings
from jobs.states import transition
from leap_core.config import parse_spec
from tests.service.conftest import wait_for, wait_status
from tests.service.processes import celery_worker, drain_queue, maintenance_once, queue_keys

HOUR = 3600.0


def recovery_settings(service_env: dict[str, str], **fields) -> Settings:
    """The services' settings, with a timeout and grace that only two-hour-old rows miss."""
    return Settings(
        database_url=service_env["LEAP_DATABASE_URL"],
        broker_url=service_env["LEAP_BROKER_URL"],
        queue=service_env["LEAP_QUEUE"],
        heartbeat_timeout_seconds=HOUR,
        redispatch_seconds=HOUR,
        **fields,
    )


def stored_job(
    database_url: str,
    owner: str,
    body: dict,
    status: JobStatus,
    attempt: int = 1,
    heartbeat_age: float = 2 * HOUR,
    preemptions: int = 0,
    queue: str | None = None,
) -> str:
    """A job as a worker on ``lost-host`` left it: leased (attempt ``attempt``, of which
    ``preemptions`` followed a preemption), then moved to ``status``, its last heartbeat
    ``heartbeat_age`` seconds ago; of ``queue`` (the queue whose jobs a message for it may
    start instead, in the fair order). No message is sent."""
    spec = parse_spec(body).model_dump(mode="json")
    with session_scope(database_url) as session:
        job = new_job(session, owner, "recovery-test", spec, ["recovery"], 0, queue=queue)
        job.attempt = attempt
        job.preemptions = preemptions
        transition(session, job, JobStatus.running, "started on lost-host", worker="lost-host")
        if status != JobStatus.running:
            transition(session, job, status, "set by the test")
        job.heartbeat_at = utcnow() - timedelta(seconds=heartbeat_age)
        return job.id


def state_events(database_url: str, job_id: str) -> list[tuple[str, int, str]]:
    with session_scope(database_url) as session:
        rows = session.scalars(
            select(JobEvent)
            .where(JobEvent.job_id == job_id, JobEvent.kind == "state")
            .order_by(JobEvent.id)
        )
        return [(event.to_status, event.attempt, event.message) for event in rows]


@pytest.fixture(scope="module")
def recovery_worker(service_env: dict[str, str], api_url: str) -> Iterator[Path]:
    """A real Celery worker (solo pool) for this module only, stopped when it ends; yields
    its log. The session's ``worker`` starts only when a later module asks for it, and the
    sweep tests before that count the messages left in the queue."""
    drain_queue(service_env)
    with celery_worker(service_env, "recovery-worker") as (_process, log_path):
        yield log_path


def test_reaper_requeues_a_job_whose_worker_died_and_the_real_worker_finishes_it(
    recovery_worker, make_client, job_body, service_env, database_url
):
    owner = "recovery-reaper"
    client = make_client(owner)
    lost = stored_job(database_url, owner, job_body(), JobStatus.running)
    alive = stored_job(database_url, owner, job_body(), JobStatus.running, heartbeat_age=5)

    report = run_pass(recovery_settings(service_env))

    assert lost in report.requeued and alive not in report.requeued + report.failed
    assert client.get(f"/v1/jobs/{alive}").json()["status"] == "running"  # fresh heartbeat
    done = wait_status(client, lost, {"succeeded", "failed"}, timeout=90)
    assert done["status"] == "succeeded", done["error"]
    assert done["attempt"] == 2
    events = state_events(database_url, lost)
    assert [(status, attempt) for status, attempt, _ in events] == [
        ("queued", 1),
        ("running", 1),
        ("queued", 2),
        ("running", 2),
        ("succeeded", 2),
    ]
    assert re.fullmatch(
        r"worker lost: no heartbeat for 720\d s; requeued as attempt 2", events[2][2]
    ), events[2][2]


def test_reaper_fails_a_job_on_its_last_attempt_and_completes_a_lost_cancellation(
    make_client, job_body, service_env, database_url
):
    owner = "recovery-limit"
    client = make_client(owner)
    last = stored_job(database_url, owner, job_body(), JobStatus.running, attempt=3)
    cancelling = stored_job(database_url, owner, job_body(), JobStatus.cancelling)

    report = run_pass(recovery_settings(service_env, max_attempts=3))

    assert last in report.failed and cancelling in report.cancelled
    failed = client.get(f"/v1/jobs/{last}").json()
    assert failed["status"] == "failed" and failed["attempt"] == 3
    assert re.fullmatch(
        r"worker lost: no heartbeat for 720\d s on attempt 3 of 3; "
        r"not retried \(LEAP_MAX_ATTEMPTS\)",
        failed["error"],
    ), failed["error"]
    assert state_events(database_url, last)[-1][:2] == ("failed", 3)
    assert client.get(f"/v1/jobs/{cancelling}").json()["status"] == "cancelled"
    assert state_events(database_url, cancelling)[-1][2].startswith(
        "worker lost: no heartbeat for 720"
    )
    again = run_pass(recovery_settings(service_env, max_attempts=3))  # nothing left to do
    assert {last, cancelling}.isdisjoint(again.requeued + again.failed + again.cancelled)


def test_reconciler_resends_queued_jobs_whose_messages_redis_lost(
    recovery_worker, make_client, job_body, service_env, database_url
):
    client = make_client()
    # A long job holds the solo worker (it takes no other message meanwhile) until it is
    # cancelled, once the reconciler has run.
    busy = client.post("/v1/jobs", json=job_body(train={"epochs": 500})).json()["id"]
    wait_status(client, busy, {"running"}, timeout=60)
    waiting = [client.post("/v1/jobs", json=job_body()).json()["id"] for _ in range(2)]
    broker = redis.Redis.from_url(service_env["LEAP_BROKER_URL"])
    keys = queue_keys(service_env["LEAP_QUEUE"])
    assert sum(broker.llen(key) for key in keys) == 2  # both messages wait in the queue

    broker.delete(*keys)  # what a Redis restarted without its data leaves
    with session_scope(database_url) as session:
        session.execute(
            update(Job)
            .where(Job.id.in_(waiting))
            .values(dispatched_at=utcnow() - timedelta(hours=2))
        )
    assert [client.get(f"/v1/jobs/{i}").json()["status"] for i in waiting] == ["queued"] * 2

    run = maintenance_once(
        service_env, heartbeat_timeout_seconds=str(HOUR), redispatch_seconds=str(HOUR)
    )
    for job_id in waiting:
        assert f"job {job_id}: redispatched" in run.stderr, run.stderr

    assert client.post(f"/v1/jobs/{busy}/cancel").json()["status"] == "cancelling"
    assert wait_status(client, busy, {"cancelled"}, timeout=30)["status"] == "cancelled"
    for job_id in waiting:
        done = wait_status(client, job_id, {"succeeded", "failed"}, timeout=90)
        assert done["status"] == "succeeded", done["error"]
        assert done["attempt"] == 1


def test_duplicate_messages_for_running_and_finished_jobs_change_nothing(
    recovery_worker, make_client, job_body, service_env, database_url
):
    owner = "recovery-duplicate"
    make_client(owner)
    # Jobs of a queue of their own: a message for a job that is not queued starts the
    # queue's next queued job, and there must be none for the duplicates to do nothing.
    alone = f"recovery-duplicate-{uuid.uuid4().hex[:8]}"
    running = stored_job(
        database_url, owner, job_body(), JobStatus.running, heartbeat_age=1, queue=alone
    )
    finished = stored_job(database_url, owner, job_body(), JobStatus.succeeded, queue=alone)
    before = {job_id: state_events(database_url, job_id) for job_id in (running, finished)}

    settings = recovery_settings(service_env)
    app = producer(settings.broker_url, settings.model_dump_json())
    task_ids = [
        app.send_task(TRAIN_TASK, args=[job_id], queue=settings.queue).id
        for job_id in (running, finished)
    ]
    logs = [recovery_worker, Path(service_env["LEAP_HOME"]) / "worker.log"]

    def handled(task: str) -> bool:
        return any(
            log.is_file()
            and re.search(rf"\[{task}\] succeeded in [\d.]+s: 'skipped'", log.read_text())
            for log in logs
        )

    wait_for(
        lambda: all(handled(task) for task in task_ids), 30, "the worker to handle both duplicates"
    )

    for job_id in (running, finished):
        assert state_events(database_url, job_id) == before[job_id]
    with session_scope(database_url) as session:
        rows = {
            job.id: job
            for job in session.scalars(select(Job).where(Job.id.in_([running, finished])))
        }
        assert rows[running].status == "running" and rows[running].worker == "lost-host"
        assert rows[finished].status == "succeeded" and rows[finished].attempt == 1


def test_passes_pick_the_same_jobs_on_the_embedded_stacks_sqlite(tmp_path, job_body):
    """SQLite keeps naive time stamps; the cut-offs must still compare them correctly."""
    url = f"sqlite:///{tmp_path / 'service.db'}"
    upgrade(url)
    stale = stored_job(url, "embedded", job_body(), JobStatus.running)
    fresh = stored_job(url, "embedded", job_body(), JobStatus.running, heartbeat_age=5)
    settings = Settings(database_url=url, heartbeat_timeout_seconds=HOUR, redispatch_seconds=HOUR)
    with session_scope(url) as session:
        reaped = reap_stale(session, settings)
        assert [job.id for job in reaped.requeued] == [stale]
        session.execute(
            update(Job).where(Job.id == stale).values(dispatched_at=utcnow() - timedelta(hours=2))
        )
    with session_scope(url) as session:
        assert [job.id for job in due_for_redispatch(session, settings)] == [stale]
        session.execute(update(Job).where(Job.id == stale).values(dispatched_at=utcnow()))
    with session_scope(url) as session:
        assert due_for_redispatch(session, settings) == []
        assert session.get(Job, fresh).status == "running"


def test_preempted_attempts_do_not_count_against_the_attempt_limit(
    make_client, job_body, service_env, database_url
):
    # Both jobs are on their third attempt with a limit of 3; the first got two of them
    # from preemptions, so it has used one counted attempt and is requeued; the other is
    # failed, naming its counted attempts.
    owner = "recovery-preempted"
    client = make_client(owner)
    preempted = stored_job(
        database_url, owner, job_body(), JobStatus.running, attempt=3, preemptions=2
    )
    counted = stored_job(database_url, owner, job_body(), JobStatus.running, attempt=3)

    report = run_pass(recovery_settings(service_env, max_attempts=3))

    assert preempted in report.requeued and counted in report.failed
    # (A worker of this module may be training it by now: its events say what was done.)
    requeued = client.get(f"/v1/jobs/{preempted}").json()
    assert (requeued["attempt"], requeued["preemptions"]) == (4, 2)
    assert re.fullmatch(
        r"worker lost: no heartbeat for 720\d s; requeued as attempt 4",
        next(
            message
            for status, attempt, message in state_events(database_url, preempted)
            if (status, attempt) == ("queued", 4)
        ),
    )
    failed = client.get(f"/v1/jobs/{counted}").json()
    assert failed["preemptions"] == 0 and "on attempt 3 of 3" in failed["error"]
