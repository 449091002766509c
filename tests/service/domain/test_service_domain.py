"""The job domain on a real PostgreSQL: migrations, the state machine and its events, and
the lease that makes a redelivered task message harmless."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, inspect, select

from jobs.db import session_scope
from jobs.migrate import downgrade, upgrade
from jobs.models import Job, JobEvent, JobStatus, utcnow
from jobs.settings import Settings
from jobs.states import ALLOWED, IllegalTransition, transition
from tests.service.conftest import scratch_database
from worker.lease import lease
from worker.runner import run_job


@pytest.fixture
def empty_database() -> Iterator[str]:
    with scratch_database(migrated=False) as url:
        yield url


def tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_migrations_upgrade_and_downgrade_cleanly_on_an_empty_database(empty_database):
    upgrade(empty_database)
    assert tables(empty_database) == {
        "alembic_version",
        "api_keys",
        "jobs",
        "job_events",
        "sweeps",
        "sweep_cells",
    }
    downgrade(empty_database)
    assert tables(empty_database) == {"alembic_version"}
    upgrade(empty_database)  # and up again
    assert "jobs" in tables(empty_database)


def new_job(session, **fields) -> Job:
    job = Job(
        owner="domain", name="t", spec={"train": {"epochs": 1}}, tags=[], priority=5, **fields
    )
    transition(session, job, JobStatus.queued, "submitted")
    return job


def test_every_transition_is_checked_and_recorded_in_the_same_transaction(database_url):
    with session_scope(database_url) as session:
        job = new_job(session)
        transition(session, job, JobStatus.running, "go", worker="w1")
        transition(session, job, JobStatus.cancelling)
        with pytest.raises(IllegalTransition, match="is cancelling; it cannot become queued"):
            transition(session, job, JobStatus.queued)
        transition(session, job, JobStatus.cancelled)
        job_id = job.id
    with session_scope(database_url) as session:
        job = session.get(Job, job_id)
        assert job.status == "cancelled" and job.worker == "w1"
        assert job.started_at is not None and job.finished_at >= job.started_at
        events = session.scalars(
            select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
        ).all()
        assert [(e.from_status, e.to_status) for e in events] == [
            (None, "queued"),
            ("queued", "running"),
            ("running", "cancelling"),
            ("cancelling", "cancelled"),
        ]
    # A failed transaction leaves neither the row change nor the event behind.
    with pytest.raises(RuntimeError), session_scope(database_url) as session:
        job = session.get(Job, job_id)
        job.attempt += 1
        transition(session, job, JobStatus.queued, "retry")
        raise RuntimeError("crash before commit")
    with session_scope(database_url) as session:
        assert session.get(Job, job_id).status == "cancelled"
        assert len(session.scalars(select(JobEvent).where(JobEvent.job_id == job_id)).all()) == 4


def test_the_transition_table():
    assert ALLOWED[JobStatus.succeeded] == frozenset()
    assert ALLOWED[JobStatus.queued] == {JobStatus.running, JobStatus.cancelled}
    assert JobStatus.queued in ALLOWED[JobStatus.failed]
    assert JobStatus.queued in ALLOWED[JobStatus.cancelled]


def test_a_redelivered_message_for_a_live_or_finished_job_does_nothing(database_url, tmp_path):
    settings = Settings(database_url=database_url, runs_dir=tmp_path, lease_seconds=60)
    with session_scope(database_url) as session:
        job = new_job(session)
    held = lease(settings, job.id, "w1")
    assert (held.job_id, held.attempt, held.worker) == (job.id, 1, "w1")
    assert lease(settings, job.id, "w2") is None  # heartbeat is fresh: w1 still has it
    with session_scope(database_url) as session:
        row = session.get(Job, job.id)
        transition(session, row, JobStatus.succeeded)
    assert run_job(job.id, "w3", settings) == "skipped"
    assert run_job("no-such-job", "w3", settings) == "skipped"


def test_a_running_job_whose_worker_died_is_taken_over(database_url, tmp_path):
    settings = Settings(database_url=database_url, runs_dir=tmp_path, lease_seconds=60)
    with session_scope(database_url) as session:
        job = new_job(session)
    lease(settings, job.id, "w1")
    with session_scope(database_url) as session:
        session.get(Job, job.id).heartbeat_at = utcnow() - timedelta(minutes=5)
    taken = lease(settings, job.id, "w2")
    assert (taken.worker, taken.attempt) == ("w2", 2)  # a new attempt fences w1 out
    with session_scope(database_url) as session:
        row = session.get(Job, job.id)
        assert (row.status, row.worker, row.attempt) == ("running", "w2", 2)
        events = session.scalars(
            select(JobEvent).where(JobEvent.job_id == job.id).order_by(JobEvent.id)
        ).all()
        assert [(e.to_status, e.attempt) for e in events] == [
            ("queued", 1),
            ("running", 1),
            ("queued", 2),
            ("running", 2),
        ]
        assert re.fullmatch(
            r"worker w1 lost: no heartbeat for 30\d s; requeued as attempt 2", events[2].message
        ), events[2].message


def test_a_key_is_found_by_prefix_and_matched_by_its_whole_hash(database_url):
    from jobs.keys import create_key, hash_token, owner_of
    from jobs.models import ApiKey

    with session_scope(database_url) as session:
        token = create_key(session, "prefix-owner")
        # another live key that shares the public prefix but not the secret
        twin = token[:12] + "x" * (len(token) - 12)
        session.add(ApiKey(owner="twin-owner", prefix=token[:12], key_hash=hash_token(twin)))
    with session_scope(database_url) as session:
        assert owner_of(session, token) == "prefix-owner"
        assert owner_of(session, twin) == "twin-owner"
        assert owner_of(session, token[:-1] + ("A" if token[-1] != "A" else "B")) is None
        assert owner_of(session, token[:12]) is None
