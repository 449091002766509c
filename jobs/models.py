"""The service's tables: API keys, jobs, job events, and sweeps with their cells.

The schema is owned by Alembic (``migrations/``); these classes only describe it. Columns
hold plain JSON for the spec, tags and metrics so that the job row is readable on its own.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


#: What :func:`new_id` makes (a job's or a sweep's id); anything else names no row.
ID_PATTERN = r"^[0-9a-f]{32}$"
#: Length of the ``name`` columns of jobs and sweeps.
NAME_LENGTH = 200


def new_id() -> str:
    return uuid.uuid4().hex


class JobStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    cancelling = "cancelling"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


TERMINAL = frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled})


class Base(DeclarativeBase):
    type_annotation_map: ClassVar = {
        dict[str, Any]: JSON,
        list[str]: JSON,
        datetime: DateTime(timezone=True),
    }


class ApiKey(Base):
    """A bearer key: only its SHA-256 is stored; ``prefix`` identifies it in listings."""

    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_prefix", "prefix"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(200), index=True)
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("owner", "idempotency_key", name="uq_jobs_owner_idempotency_key"),
        Index("ix_jobs_owner_created", "owner", "created_at", "id"),
        Index("ix_jobs_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    tags: Mapped[list[str]] = mapped_column(default=list)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    # The Celery queue its messages go to: the fair order is among one queue's jobs.
    queue: Mapped[str | None] = mapped_column(String(200), default=None)
    spec: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.queued)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    # Attempts that ended in a preemption; LEAP_MAX_ATTEMPTS counts the others.
    preemptions: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    idempotency_key: Mapped[str | None] = mapped_column(String(200), default=None)
    request_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    dispatched_at: Mapped[datetime | None] = mapped_column(default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)
    worker: Mapped[str | None] = mapped_column(String(200), default=None)
    epoch: Mapped[int | None] = mapped_column(Integer, default=None)
    epochs: Mapped[int | None] = mapped_column(Integer, default=None)
    step: Mapped[int | None] = mapped_column(Integer, default=None)
    global_step: Mapped[int | None] = mapped_column(Integer, default=None)
    total_steps: Mapped[int | None] = mapped_column(Integer, default=None)
    eta_seconds: Mapped[float | None] = mapped_column(Float, default=None)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64), default=None)
    mlflow_experiment_id: Mapped[str | None] = mapped_column(String(64), default=None)
    run_dir: Mapped[str | None] = mapped_column(Text, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)

    events: Mapped[list[JobEvent]] = relationship(
        back_populates="job", order_by="JobEvent.id", lazy="raise"
    )


class JobEvent(Base):
    """A state change (``kind='state'``) or a log line (``kind='log'``) of a job."""

    __tablename__ = "job_events"
    __table_args__ = (Index("ix_job_events_job_id", "job_id", "id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(8))
    from_status: Mapped[str | None] = mapped_column(String(16), default=None)
    to_status: Mapped[str | None] = mapped_column(String(16), default=None)
    attempt: Mapped[int] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(Text, default="")

    job: Mapped[Job] = relationship(back_populates="events")


class Sweep(Base):
    """A grid of jobs submitted together (``POST /v1/sweeps``). ``definition`` is the sweep
    file as submitted, with its base spec inline, so the results table can be rebuilt from
    the database alone (method axis, baselines, metric columns)."""

    __tablename__ = "sweeps"
    __table_args__ = (
        UniqueConstraint("owner", "idempotency_key", name="uq_sweeps_owner_idempotency_key"),
        Index("ix_sweeps_owner_created", "owner", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    definition: Mapped[dict[str, Any]]
    tags: Mapped[list[str]] = mapped_column(default=list)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), default=None)
    request_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    cells: Mapped[list[SweepCell]] = relationship(
        back_populates="sweep", order_by="SweepCell.position", lazy="raise"
    )


class SweepCell(Base):
    """One cell of a sweep and the job that trains it. The labels and seed are kept here
    (not re-derived from the definition) so the table groups exactly what was submitted."""

    __tablename__ = "sweep_cells"
    __table_args__ = (UniqueConstraint("job_id", name="uq_sweep_cells_job_id"),)

    sweep_id: Mapped[str] = mapped_column(
        ForeignKey("sweeps.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    cell: Mapped[str] = mapped_column(Text)
    #: ``[[axis, label], ...]`` in axis order (a list, so the order survives any JSON store).
    labels: Mapped[list[list[str]]] = mapped_column(JSON)
    seed: Mapped[int] = mapped_column(Integer)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))

    sweep: Mapped[Sweep] = relationship(back_populates="cells")
    job: Mapped[Job] = relationship(lazy="raise")
