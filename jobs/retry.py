"""Retrying a database write through an outage, with exponential backoff.

A worker that finishes a six-hour job while PostgreSQL restarts must not lose the result,
nor leave the row ``running`` for the reaper to retrain: it waits for the database and
writes again. Only errors that mean "the database is unreachable or dropped the
connection" are retried; a constraint violation or a bug fails at once. Each attempt is
a whole transaction (the callable opens its own session), so a retry never finds half of
an earlier one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError

logger = logging.getLogger(__name__)

T = TypeVar("T")


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` says the database is away rather than the statement is wrong."""
    if isinstance(error, OperationalError | InterfaceError | DisconnectionError):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


def backoff_delays(first: float = 0.5, factor: float = 2.0, cap: float = 15.0) -> Iterator[float]:
    """0.5, 1, 2, 4, 8, 15, 15, … seconds."""
    delay = first
    while True:
        yield delay
        delay = min(cap, delay * factor)


def with_db_retry(
    action: Callable[[], T], what: str, patience: float, sleep: Callable[[float], None] = time.sleep
) -> T:
    """Run ``action`` until it succeeds, retrying transient database errors with backoff for
    up to ``patience`` seconds; then the last error is raised. ``what`` names the write in
    the log lines ("job 1f2e…: recording succeeded")."""
    started = time.monotonic()
    for attempt, delay in enumerate(backoff_delays(), start=1):
        try:
            return action()
        except Exception as error:
            waited = time.monotonic() - started
            if not is_transient(error) or waited + delay > patience:
                if is_transient(error):
                    logger.error(
                        "%s: database still unreachable after %.0f s; giving up", what, waited
                    )
                raise
            reason = str(getattr(error, "orig", None) or error).splitlines()[0][:200]
            logger.warning(
                "%s: database unavailable (%s: %s); retry %d in %.1f s",
                what,
                type(error).__name__,
                reason,
                attempt,
                delay,
            )
            sleep(delay)
    raise AssertionError("unreachable")  # the delays never run out
