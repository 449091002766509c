"""The order queued jobs start in: fair between owners, by priority within an owner.

PostgreSQL decides, not the broker. A message names a job, but the worker that takes it
starts a job of the owner whose turn it is, among the jobs of the message's queue that need
as many devices:

- the owner with the fewest jobs running goes first, and between owners running as many,
  the one whose last job started longest ago (or never);
- within that owner, its job of the highest priority, then the oldest (whichever of its
  jobs the message names: a message sent again goes behind the others in the broker).

So when every worker is busy with owner A's sweep and owner B submits one job later, the
next worker that frees up starts B's job (B runs none, or has waited longer), ahead of A's
remaining cells; then A and B alternate. A message spent on another owner's turn is sent
again for the job it named, so every queued job keeps a message of its own (the started
job's own message then finds it running and does nothing, as a duplicate does). An owner
with ``LEAP_MAX_RUNNING_PER_OWNER`` jobs running is passed over (its queued jobs are
*held*); when one of its jobs ends, the worker sends a message for its next one.

A queued job's *position* is how many queued jobs of its queue and kind start before it if
nothing else is submitted: the same rule played forward (:func:`places`). Only jobs whose
message went out take part: one the broker refused waits for its resend (a replay of the
request, or the reconciler), as before.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, func, or_, select, update
from sqlalchemy.orm import Session

from jobs.models import Job, JobStatus, utcnow
from jobs.settings import Settings

#: The states in which a job holds a worker.
ACTIVE = (JobStatus.running, JobStatus.cancelling)


def devices_of(spec: dict[str, Any]) -> int:
    return int((spec.get("resources") or {}).get("devices", 1))


def _devices_column() -> Any:
    return func.coalesce(Job.spec["resources"]["devices"].as_integer(), 1).label("devices")


#: A start in the played-forward order is later than any real one.
FUTURE = 1e12


@dataclass
class _Owner:
    """What decides an owner's turn: its running jobs and when its last job started
    (seconds since the epoch; ``None``: never)."""

    running: int = 0
    last_start: float | None = None
    queued: list[Any] = field(default_factory=list)

    def key(self, name: str) -> tuple[int, float, str]:
        # The fewest running first; then never started, then the longest ago.
        return (self.running, -1.0 if self.last_start is None else self.last_start, name)


def _owners(
    session: Session, queue: str | None, devices: int | None, named: str | None = None
) -> dict[str, _Owner]:
    """The owners with jobs in ``queue``: running counts, last starts and queued jobs (of
    ``devices`` devices, or all), whose message went out or which the message names."""
    owners: dict[str, _Owner] = defaultdict(_Owner)
    in_queue = Job.queue.is_not_distinct_from(queue)
    running = select(Job.owner, func.count()).where(Job.status.in_(ACTIVE), in_queue)
    for name, count in session.execute(running.group_by(Job.owner)):
        owners[name].running = int(count)
    # A job whose message never went out (the broker refused it) waits for its resend.
    queued = select(Job.id, Job.owner, Job.priority, Job.created_at, _devices_column()).where(
        Job.status == JobStatus.queued,
        in_queue,
        or_(Job.dispatched_at.is_not(None), Job.id == named),
    )
    if devices is not None:
        queued = queued.where(
            func.coalesce(Job.spec["resources"]["devices"].as_integer(), 1) == devices
        )
    for row in session.execute(queued):
        owners[row.owner].queued.append(row)
    if not any(owner.queued for owner in owners.values()):
        return {}
    started = select(Job.owner, func.max(Job.started_at)).where(
        Job.owner.in_([name for name, owner in owners.items() if owner.queued]), in_queue
    )
    for name, last in session.execute(started.group_by(Job.owner)):
        owners[name].last_start = None if last is None else _seconds(last)
    for entry in owners.values():
        entry.queued.sort(key=lambda row: (-row.priority, row.created_at, row.id))
    return dict(owners)


def _seconds(stamp: datetime) -> float:
    # SQLite hands back naive datetimes; they were written in UTC.
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()


def next_job(session: Session, settings: Settings, named: Job) -> Job | None:
    """The queued job a message naming ``named`` starts (see the module), locked for this
    session (rows another worker is taking are skipped); ``None`` when none can start."""
    owners = _owners(session, named.queue, devices_of(named.spec), named.id)
    limit = settings.max_running_per_owner
    ready = sorted(
        owner.key(name)
        for name, owner in owners.items()
        if owner.queued and (limit is None or owner.running < limit)
    )
    for *_, name in ready:
        for row in owners[name].queued:
            job = session.scalar(
                select(Job)
                .where(Job.id == row.id, Job.status == JobStatus.queued)
                .with_for_update(skip_locked=True)
            )
            if job is not None and _claimed(session, job):
                return job
    return None


def _claimed(session: Session, job: Job) -> bool:
    """Take ``job`` with a write that holds only while it is still queued. PostgreSQL's row
    lock already makes it ours; SQLite (the embedded stack) has no row locks, and this
    write, which waits for any other writer, is what keeps two workers off one job."""
    done = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status == JobStatus.queued)
        .values(updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if cast(CursorResult[Any], done).rowcount != 1:
        return False
    session.refresh(job)
    return True


def held_reason(session: Session, settings: Settings, job: Job) -> str:
    """Why a queued job cannot start now (its owner is at ``LEAP_MAX_RUNNING_PER_OWNER``)."""
    running = session.scalar(
        select(func.count()).where(Job.owner == job.owner, Job.status.in_(ACTIVE))
    )
    return (
        f"{running} of the owner's jobs are running, the most LEAP_MAX_RUNNING_PER_OWNER "
        f"({settings.max_running_per_owner}) allows; it starts when one ends"
    )


@dataclass(frozen=True)
class Place:
    """Where a queued job stands: ``position`` jobs start before it; ``held`` says why it
    cannot start now, when it cannot."""

    position: int
    held: str | None = None


def places(session: Session, settings: Settings, queue: str | None) -> dict[str, Place]:
    """Every queued job of ``queue``: its place, the rule of :func:`next_job` played
    forward (each start raises its owner's running count and makes it the last to have
    started), separately for each number of devices."""
    limit = settings.max_running_per_owner
    found: dict[str, Place] = {}
    owners = _owners(session, queue, None)
    kinds = {row.devices for owner in owners.values() for row in owner.queued}
    for devices in sorted(kinds):
        state = {
            name: _Owner(
                owner.running,
                owner.last_start,
                [row for row in owner.queued if row.devices == devices],
            )
            for name, owner in owners.items()
        }
        position, later = 0, FUTURE
        while True:
            ready = [
                owner.key(name)
                for name, owner in state.items()
                if owner.queued and (limit is None or owner.running < limit)
            ]
            if not ready:
                break
            *_, name = min(ready)
            owner = state[name]
            found[owner.queued.pop(0).id] = Place(position)
            position += 1
            owner.running += 1
            owner.last_start, later = later, later + 1.0  # each start the newest so far
        held = sorted(
            ((name, row) for name, owner in state.items() for row in owner.queued),
            key=lambda item: (item[1].created_at, item[1].id),
        )
        for name, row in held:
            found[row.id] = Place(
                position,
                f"{owners[name].running} of the owner's jobs are running, the most "
                f"LEAP_MAX_RUNNING_PER_OWNER ({limit}) allows; it starts when one ends",
            )  # the same words as held_reason
            position += 1
    return found


def queued_count(session: Session, owner: str) -> int:
    return int(
        session.scalar(
            select(func.count()).where(Job.owner == owner, Job.status == JobStatus.queued)
        )
        or 0
    )


def next_held(session: Session, owner: str) -> Job | None:
    """The owner's queued job to start next (its highest priority, then its oldest)."""
    return session.scalar(
        select(Job)
        .where(Job.owner == owner, Job.status == JobStatus.queued)
        .order_by(Job.priority.desc(), Job.created_at, Job.id)
        .limit(1)
    )
