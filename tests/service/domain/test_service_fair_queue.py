"""The fair queue on a real PostgreSQL of its own: which job a message starts, the places
queued jobs are shown, and the per-owner limits."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from jobs.db import session_scope
from jobs.fair_queue import places
from jobs.models import Job, JobEvent, JobStatus, utcnow
from jobs.service import new_job
from jobs.settings import Settings
from jobs.states import transition
from jobs.submission import QueueFull, check_queue_room
from tests.service.conftest import scratch_database
from worker.lease import lease

QUEUE = "fair"
SPEC = {"train": {"epochs": 1}, "resources": {"devices": 1}}


@pytest.fixture
def url() -> Iterator[str]:
    with scratch_database() as scratch:
        yield scratch


def submitted(url: str, owner: str, minutes_ago: float, priority: int = 0, **spec) -> str:
    with session_scope(url) as session:
        job = new_job(
            session,
            owner,
            "fair",
            {**SPEC, **spec},
            [],
            priority,
            dispatched_at=utcnow(),
            queue=QUEUE,
        )
        job.created_at = utcnow() - timedelta(minutes=minutes_ago)
        session.flush()
        return job.id


def started(url: str, job_id: str, minutes_ago: float) -> None:
    with session_scope(url) as session:
        job = session.get(Job, job_id)
        transition(session, job, JobStatus.running, "started", worker="elsewhere")
        job.started_at = utcnow() - timedelta(minutes=minutes_ago)
        job.heartbeat_at = utcnow()


def settings_for(url: str, tmp_path, **fields) -> Settings:
    # No broker here: a message sent again for a passed-over job fails and is logged.
    return Settings(
        database_url=url,
        runs_dir=tmp_path,
        queue=QUEUE,
        broker_url="redis://127.0.0.1:1/0",
        **fields,
    )


def shown(url: str, settings: Settings) -> dict[str, tuple[int, str | None]]:
    with session_scope(url) as session:
        return {key: (p.position, p.held) for key, p in places(session, settings, QUEUE).items()}


def test_a_later_owner_starts_before_the_busy_owners_remaining_cells(url, tmp_path):
    settings = settings_for(url, tmp_path)
    sweep = [submitted(url, "a", minutes_ago=10 - i) for i in range(4)]
    started(url, sweep[0], minutes_ago=5)  # A's first cell holds the only worker
    late = submitted(url, "b", minutes_ago=1)
    # B runs nothing: its job comes first; then A's cells and B alternate (B has one).
    assert shown(url, settings) == {
        late: (0, None),
        sweep[1]: (1, None),
        sweep[2]: (2, None),
        sweep[3]: (3, None),
    }
    # A's first cell ends; the next message off the broker is for A's second cell ...
    with session_scope(url) as session:
        transition(session, session.get(Job, sweep[0]), JobStatus.succeeded, "done")
    held = lease(settings, sweep[1], "w1")
    # ... but B's job starts: B has never started one, A started one five minutes ago.
    assert held is not None and held.job_id == late
    with session_scope(url) as session:
        assert session.get(Job, sweep[1]).status == JobStatus.queued
    # B's own message later finds its job running and starts nothing.
    assert lease(settings, late, "w2") is None
    # The next message for A's second cell starts it: B has one running, A none.
    assert lease(settings, sweep[1], "w2").job_id == sweep[1]


def test_an_owners_priorities_order_its_own_jobs_and_not_the_turns(url, tmp_path):
    settings = settings_for(url, tmp_path)
    low = submitted(url, "a", minutes_ago=9)
    urgent = submitted(url, "a", minutes_ago=8, priority=9)
    other = submitted(url, "b", minutes_ago=7)
    started(url, submitted(url, "a", minutes_ago=20), minutes_ago=3)  # A runs one
    assert shown(url, settings) == {other: (0, None), urgent: (1, None), low: (2, None)}


def test_jobs_of_other_queues_and_device_counts_are_other_queues(url, tmp_path):
    settings = settings_for(url, tmp_path)
    single = submitted(url, "a", minutes_ago=5)
    double = submitted(url, "b", minutes_ago=9, resources={"devices": 2})
    with session_scope(url) as session:
        foreign = new_job(session, "c", "x", SPEC, [], 0, dispatched_at=utcnow(), queue="other")
        foreign.created_at = utcnow() - timedelta(hours=1)
    # Each number of devices has its own positions; another queue's job is not counted.
    assert shown(url, settings) == {single: (0, None), double: (0, None)}
    assert lease(settings, single, "w1").job_id == single  # not the older two-device job


def test_an_owner_at_its_running_limit_is_held_and_its_next_job_waits(url, tmp_path):
    settings = settings_for(url, tmp_path, max_running_per_owner=1)
    running = submitted(url, "a", minutes_ago=10)
    started(url, running, minutes_ago=5)
    waiting = submitted(url, "a", minutes_ago=4)
    reason = (
        "1 of the owner's jobs are running, the most LEAP_MAX_RUNNING_PER_OWNER (1) "
        "allows; it starts when one ends"
    )
    assert shown(url, settings) == {waiting: (0, reason)}
    assert lease(settings, waiting, "w1") is None  # held: nothing starts
    with session_scope(url) as session:
        assert session.get(Job, waiting).status == JobStatus.queued


def test_an_owners_queue_is_refused_past_its_limit_naming_the_setting(url, tmp_path):
    settings = settings_for(url, tmp_path, max_queued_per_owner=3)
    for minutes in (3, 2):
        submitted(url, "a", minutes_ago=minutes)
    with session_scope(url) as session:
        check_queue_room(session, settings, "a", 1)  # the third fits
        check_queue_room(session, settings, "b", 3)  # another owner's room is its own
        with pytest.raises(QueueFull) as refused:
            check_queue_room(session, settings, "a", 2)
    assert str(refused.value) == (
        "2 of your jobs are queued and this request adds 2; LEAP_MAX_QUEUED_PER_OWNER "
        "allows 3: wait for some to start, or cancel some"
    )


def test_a_job_waiting_for_free_devices_is_cancelled_at_once(url, tmp_path, monkeypatch):
    import threading

    from jobs.service import cancel_job
    from leap_core.config import parse_spec
    from tests.tiny import tiny_job
    from worker import ranks
    from worker.outcome import Outcome

    settings = settings_for(url, tmp_path)
    job_id = submitted(url, "a", minutes_ago=1, resources={"devices": 2})
    held = lease(settings, job_id, "w1")
    assert held is not None
    # Every device is taken by other jobs, for as long as this one waits.
    monkeypatch.setattr(ranks, "claim_devices", lambda count: None)
    monkeypatch.setattr(ranks, "WAIT_SECONDS", 0.05)
    monkeypatch.setattr(ranks, "machine_devices", lambda: 2)

    def cancel_soon() -> None:
        with session_scope(url) as session:
            cancel_job(session, "a", job_id)

    threading.Timer(0.3, cancel_soon).start()
    spec = parse_spec({**tiny_job(), "resources": {"devices": 2}})
    assert ranks.run_on_devices(settings, held, spec) == Outcome.cancelled
    with session_scope(url) as session:
        job = session.get(Job, job_id)
        assert job.status == JobStatus.cancelled
        last = session.scalars(
            select(JobEvent.message).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
        ).all()[-1]
    assert last.startswith("cancelled while waiting ") and last.endswith(" s for 2 free devices")
