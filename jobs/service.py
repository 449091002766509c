"""Job operations shared by the API and the workers: create, read, list, cancel, retry.

Each function works inside the caller's session and leaves the commit to it, except
where noted; every state change goes through :func:`jobs.states.transition`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from jobs.models import ID_PATTERN, Job, JobEvent, JobStatus
from jobs.states import IllegalTransition, transition

T = TypeVar("T")


class JobNotFound(LookupError):
    pass


class IdempotencyConflict(ValueError):
    """The Idempotency-Key was used before with a different request body."""


def request_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Created:
    job: Job
    created: bool  # False: an earlier request with the same Idempotency-Key made it


def new_job(
    session: Session,
    owner: str,
    name: str,
    spec: dict[str, Any],
    tags: list[str],
    priority: int,
    idempotency_key: str | None = None,
    body_hash: str | None = None,
    dispatched_at: datetime | None = None,
    queue: str | None = None,
) -> Job:
    """Add a queued job and its first event to the session without committing, so that a
    sweep can add all its jobs and commit them in one transaction. ``dispatched_at``
    stamps it as sent in the same transaction (see :func:`jobs.dispatch.dispatch_new`)."""
    job = Job(
        owner=owner,
        name=name,
        spec=spec,
        tags=tags,
        priority=priority,
        idempotency_key=idempotency_key,
        request_hash=body_hash,
        epochs=spec.get("train", {}).get("epochs"),
        dispatched_at=dispatched_at,
        queue=queue,
    )
    transition(session, job, JobStatus.queued, "submitted")
    return job


def create_job(
    session: Session,
    owner: str,
    name: str,
    spec: dict[str, Any],
    tags: list[str],
    priority: int,
    idempotency_key: str | None = None,
    body_hash: str | None = None,
    dispatched_at: datetime | None = None,
    queue: str | None = None,
) -> Created:
    """Insert a queued job and its first event, and commit. With an idempotency key, a
    repeat of the same request returns the job made the first time (even when the two
    requests race) and a different body under the same key is refused."""
    if idempotency_key is not None:
        existing = _by_idempotency_key(session, owner, idempotency_key)
        if existing is not None:
            return _replay(existing, body_hash)
    job = new_job(
        session, owner, name, spec, tags, priority, idempotency_key, body_hash, dispatched_at, queue
    )
    raced = commit_or_find(
        session,
        lambda: _by_idempotency_key(session, owner, idempotency_key) if idempotency_key else None,
    )
    return Created(job, True) if raced is None else _replay(raced, body_hash)


def commit_or_find(session: Session, find: Callable[[], T | None]) -> T | None:
    """Commit; when the commit hits a unique constraint (two requests with one idempotency
    key raced), roll back and return what ``find`` finds, the row the other request made.
    Returns None after a successful commit; re-raises when nothing is found."""
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        existing = find()
        if existing is None:
            raise
        return existing
    return None


def _by_idempotency_key(session: Session, owner: str, key: str) -> Job | None:
    return session.scalar(select(Job).where(Job.owner == owner, Job.idempotency_key == key))


def has_idempotent(session: Session, owner: str, key: str) -> bool:
    """Whether a request with this Idempotency-Key already created a job (a replay)."""
    return _by_idempotency_key(session, owner, key) is not None


def queued_jobs(session: Session, owner: str, tag: str | None) -> list[Job]:
    """The owner's queued jobs (with ``tag``, when given), in no particular order."""
    rows = session.scalars(select(Job).where(Job.owner == owner, Job.status == JobStatus.queued))
    return [job for job in rows if tag is None or tag in (job.tags or [])]


def check_same_request(stored_hash: str | None, body_hash: str | None) -> None:
    """Refuse a replayed Idempotency-Key whose body differs from the first request's."""
    if stored_hash != body_hash:
        raise IdempotencyConflict("Idempotency-Key was already used with a different body")


def _replay(job: Job, body_hash: str | None) -> Created:
    check_same_request(job.request_hash, body_hash)
    return Created(job, False)


def get_job(session: Session, owner: str, job_id: str, lock: bool = False) -> Job:
    """The owner's job; another owner's job is indistinguishable from a missing one."""
    query = select(Job).where(Job.id == job_id, Job.owner == owner)
    if lock:
        query = query.with_for_update()
    job = session.scalar(query)
    if job is None:
        raise JobNotFound(job_id)
    return job


def encode_cursor(created_at: datetime, job_id: str) -> str:
    raw = f"{created_at.isoformat()}|{job_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The position a cursor of :func:`encode_cursor` names. The id must be one this
    service makes: a cursor is client input, and a crafted one (a NUL byte, say) must not
    reach the database's parameters."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, job_id = raw.split("|", 1)
        if not re.fullmatch(ID_PATTERN, job_id):
            raise ValueError(job_id)
        return datetime.fromisoformat(stamp), job_id
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"cursor: not a cursor from this API (got {cursor!r})") from None


def list_jobs(
    session: Session,
    owner: str,
    status: str | None,
    tag: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Job], str | None]:
    """A page of the owner's jobs, newest first, and the cursor of the next page."""
    query = select(Job).where(Job.owner == owner)
    if status is not None:
        query = query.where(Job.status == status)
    if cursor is not None:
        created_at, job_id = decode_cursor(cursor)
        query = query.where(
            or_(Job.created_at < created_at, and_(Job.created_at == created_at, Job.id < job_id))
        )
    query = query.order_by(Job.created_at.desc(), Job.id.desc())
    if tag is None:
        rows = list(session.scalars(query.limit(limit + 1)))
    else:
        # Tags are a JSON list (portable across SQLite and PostgreSQL); filter in Python,
        # reading in chunks until the page is full.
        rows, offset = [], 0
        while len(rows) <= limit:
            chunk = list(session.scalars(query.offset(offset).limit(500)))
            rows += [job for job in chunk if tag in (job.tags or [])]
            if len(chunk) < 500:
                break
            offset += 500
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1].created_at, rows[-1].id) if more else None


def cancel_job(session: Session, owner: str, job_id: str) -> Job:
    """Queued: cancelled at once. Running: cancelling (the worker stops it between
    steps). Already cancelling or cancelled: unchanged. Commits."""
    job = get_job(session, owner, job_id, lock=True)
    if job.status in (JobStatus.cancelling, JobStatus.cancelled):
        return job
    target = JobStatus.cancelled if job.status == JobStatus.queued else JobStatus.cancelling
    transition(session, job, target, "cancel requested")
    session.commit()
    return job


def retry_job(session: Session, owner: str, job_id: str) -> Job:
    """A failed or cancelled job goes back to the queue as a new attempt, which resumes
    from its last checkpoint. Commits; the caller dispatches."""
    job = get_job(session, owner, job_id, lock=True)
    if job.status not in (JobStatus.failed, JobStatus.cancelled):
        raise IllegalTransition(job.id, job.status, JobStatus.queued)
    job.attempt += 1
    transition(
        session,
        job,
        JobStatus.queued,
        f"retry: attempt {job.attempt}",
        dispatched_at=None,
        worker=None,
    )
    session.commit()
    return job


def list_events(session: Session, job: Job, after: int, limit: int) -> list[JobEvent]:
    query = (
        select(JobEvent)
        .where(JobEvent.job_id == job.id, JobEvent.id > after)
        .order_by(JobEvent.id)
        .limit(limit)
    )
    return list(session.scalars(query))
