"""Sweep operations: store a sweep with one job per cell in one transaction, read it back
with its jobs, list an owner's sweeps, and summarise a sweep's state from its jobs.

A sweep has no state of its own: its jobs carry it (and only :mod:`jobs.states` changes
those), so the summary is always computed, never stored and never stale. Expanding the
sweep file into cells is the caller's business (the API uses ``leap_core.sweeps``); this
module only needs each cell's id, labels, seed, job name and resolved spec.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from jobs.models import TERMINAL, Job, JobStatus, Sweep, SweepCell, new_id, utcnow
from jobs.service import (
    check_same_request,
    commit_or_find,
    decode_cursor,
    encode_cursor,
    new_job,
)
from jobs.settings import Settings
from jobs.submission import check_queue_room


class SweepNotFound(LookupError):
    pass


@dataclass(frozen=True)
class PlannedCell:
    """A validated cell, ready to become a job."""

    cell: str
    labels: tuple[tuple[str, str], ...]
    seed: int
    name: str
    spec: dict[str, Any]


@dataclass
class CreatedSweep:
    sweep: Sweep
    jobs: list[Job]
    created: bool  # False: an earlier request with the same Idempotency-Key made it


def sweep_tag(sweep_id: str) -> str:
    """The tag every job of a sweep carries, so ``GET /v1/jobs?tag=`` lists them."""
    return f"sweep:{sweep_id}"


def create_sweep(
    session: Session,
    owner: str,
    name: str,
    definition: dict[str, Any],
    cells: list[PlannedCell],
    tags: list[str],
    priority: int,
    idempotency_key: str | None = None,
    body_hash: str | None = None,
    settings: Settings | None = None,
) -> CreatedSweep:
    """Insert the sweep, its queued jobs (with their first events) and the cells linking
    them, and commit once: either the whole grid is stored or none of it. With an
    idempotency key, a repeat returns the sweep made the first time (also when the two
    requests race) and a different body under the same key is refused. ``settings``
    bring the per-owner queue limit (:class:`~jobs.submission.QueueFull`)."""
    if idempotency_key is not None:
        existing = _by_idempotency_key(session, owner, idempotency_key)
        if existing is not None:
            return _replay(session, existing, body_hash)
    if settings is not None:
        check_queue_room(session, settings, owner, len(cells))
    sweep = Sweep(
        id=new_id(),
        owner=owner,
        name=name,
        definition=definition,
        tags=tags,
        priority=priority,
        idempotency_key=idempotency_key,
        request_hash=body_hash,
        created_at=utcnow(),
    )
    session.add(sweep)
    jobs = []
    for position, planned in enumerate(cells):
        job = new_job(
            session,
            owner,
            planned.name,
            planned.spec,
            [*tags, sweep_tag(sweep.id)],
            priority,
            queue=None if settings is None else settings.queue,
        )
        session.add(
            SweepCell(
                sweep_id=sweep.id,
                position=position,
                cell=planned.cell,
                labels=[list(pair) for pair in planned.labels],
                seed=planned.seed,
                job_id=job.id,
            )
        )
        jobs.append(job)
    raced = commit_or_find(
        session,
        lambda: _by_idempotency_key(session, owner, idempotency_key) if idempotency_key else None,
    )
    if raced is not None:
        return _replay(session, raced, body_hash)
    return CreatedSweep(sweep, jobs, True)


def _by_idempotency_key(session: Session, owner: str, key: str) -> Sweep | None:
    return session.scalar(select(Sweep).where(Sweep.owner == owner, Sweep.idempotency_key == key))


def _replay(session: Session, sweep: Sweep, body_hash: str | None) -> CreatedSweep:
    check_same_request(sweep.request_hash, body_hash)
    return CreatedSweep(sweep, [job for _cell, job in cells_with_jobs(session, sweep)], False)


def get_sweep(session: Session, owner: str, sweep_id: str) -> Sweep:
    """The owner's sweep; another owner's sweep is indistinguishable from a missing one."""
    sweep = session.scalar(select(Sweep).where(Sweep.id == sweep_id, Sweep.owner == owner))
    if sweep is None:
        raise SweepNotFound(sweep_id)
    return sweep


def cells_with_jobs(session: Session, sweep: Sweep) -> list[tuple[SweepCell, Job]]:
    """The sweep's cells in grid order, each with its job, in one query."""
    query = (
        select(SweepCell, Job)
        .join(Job, Job.id == SweepCell.job_id)
        .where(SweepCell.sweep_id == sweep.id)
        .order_by(SweepCell.position)
    )
    return [(cell, job) for cell, job in session.execute(query)]


def status_counts(statuses: list[str]) -> dict[str, int]:
    """How many jobs are in each state, every state listed (zeros included)."""
    counted = Counter(statuses)
    return {state.value: counted.get(state.value, 0) for state in JobStatus}


def sweep_status(counts: dict[str, int]) -> str:
    """The sweep's state from its jobs': ``queued`` until one starts, ``running`` while any
    is unfinished, then ``succeeded`` if all did, else ``failed`` (some failed) or
    ``cancelled``."""
    total = sum(counts.values())
    unfinished = total - sum(counts[state.value] for state in TERMINAL)
    if total and counts[JobStatus.queued] == total:
        return JobStatus.queued.value
    if unfinished:
        return JobStatus.running.value
    if counts[JobStatus.succeeded] == total:
        return JobStatus.succeeded.value
    return JobStatus.failed.value if counts[JobStatus.failed] else JobStatus.cancelled.value


def list_sweeps(
    session: Session, owner: str, limit: int, cursor: str | None
) -> tuple[list[tuple[Sweep, dict[str, int]]], str | None]:
    """A page of the owner's sweeps, newest first, each with its jobs' status counts, and
    the cursor of the next page."""
    query = select(Sweep).where(Sweep.owner == owner)
    if cursor is not None:
        created_at, sweep_id = decode_cursor(cursor)
        query = query.where(
            or_(
                Sweep.created_at < created_at,
                and_(Sweep.created_at == created_at, Sweep.id < sweep_id),
            )
        )
    rows = list(
        session.scalars(query.order_by(Sweep.created_at.desc(), Sweep.id.desc()).limit(limit + 1))
    )
    more = len(rows) > limit
    rows = rows[:limit]
    counts: dict[str, dict[str, int]] = {sweep.id: status_counts([]) for sweep in rows}
    if rows:
        tally = (
            select(SweepCell.sweep_id, Job.status, func.count())
            .join(Job, Job.id == SweepCell.job_id)
            .where(SweepCell.sweep_id.in_(list(counts)))
            .group_by(SweepCell.sweep_id, Job.status)
        )
        for sweep_id, state, number in session.execute(tally):
            counts[sweep_id][state] = number
    page = [(sweep, counts[sweep.id]) for sweep in rows]
    return page, encode_cursor(rows[-1].created_at, rows[-1].id) if more else None
