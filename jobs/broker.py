"""What the API (producer) and the workers (consumer) must agree on about the broker."""

from __future__ import annotations

from jobs.settings import Settings

TRAIN_TASK = "leap.train"


def broker_options(settings: Settings) -> dict:
    """Transport options. Redis redelivers an unacknowledged message after the visibility
    timeout; since acks are late, it must outlast the longest job. The SQLAlchemy transport
    (embedded stack) hands its options to SQLAlchemy's ``create_engine``: a busy timeout
    lets the API and the worker share the SQLite file."""
    if settings.broker_url.startswith("sqla+"):
        return {"connect_args": {"timeout": 30}}
    return {"visibility_timeout": 7 * 24 * 3600}
