"""Calls to the tracking store that ride out an outage.

A tracking store is a service like the job database: an MLflow server restarting, a SQLite
file locked by a concurrent writer, a network blip. None of these is the run's fault, so a
failed call is retried with backoff for up to ``retry_seconds`` before the run gives up
with :class:`TrackingUnavailable`, which names the store (its URI without a password).
Errors that no retry can fix (a value MLflow refuses, a run that does not exist, a
permission) are raised at once.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import TypeVar

from mlflow.exceptions import MlflowException

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: MLflow error codes that mean "the request is wrong", not "the store is away".
PERMANENT_CODES = frozenset(
    {
        "INVALID_PARAMETER_VALUE",
        "RESOURCE_DOES_NOT_EXIST",
        "RESOURCE_ALREADY_EXISTS",
        "INVALID_STATE",
        "PERMISSION_DENIED",
        "UNAUTHENTICATED",
        "BAD_REQUEST",
    }
)


class TrackingUnavailable(RuntimeError):
    """The tracking store did not answer within the retry window."""


class TrackingMisconfigured(RuntimeError):
    """The store answers, but cannot be used as set up; waiting will not help."""


def redacted(uri: str) -> str:
    """``uri`` with any password replaced by ``***`` (``scheme://user:***@host``)."""
    return re.sub(r"(://[^/:@]+:)[^/@]+@", r"\1***@", uri)


def is_permanent(error: BaseException) -> bool:
    """Whether retrying ``error`` cannot help."""
    if isinstance(error, TrackingMisconfigured):
        return True
    if isinstance(error, MlflowException):
        return error.error_code in PERMANENT_CODES
    return isinstance(error, TypeError | AttributeError | KeyError | FileNotFoundError)


def describe(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]


def unavailable(uri: str, seconds: float, what: str, error: BaseException) -> TrackingUnavailable:
    return TrackingUnavailable(
        f"tracking store {redacted(uri)} unavailable for {seconds:g} s while {what} "
        f"(LEAP_TRACKING_RETRY_SECONDS): {describe(error)}"
    )


def with_tracking_retry(
    call: Callable[[], T],
    uri: str,
    what: str,
    retry_seconds: float,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``call()``, retried with backoff (0.5 s doubling to 8 s) while it fails with a
    transient error, for at most ``retry_seconds``."""
    deadline = time.monotonic() + retry_seconds
    delay = 0.5
    warned = False
    while True:
        try:
            return call()
        except Exception as error:
            if is_permanent(error):
                raise
            if time.monotonic() + delay > deadline:
                raise unavailable(uri, retry_seconds, what, error) from error
            if not warned:
                logger.warning(
                    "tracking store %s: %s while %s; retrying for up to %g s",
                    redacted(uri),
                    describe(error),
                    what,
                    retry_seconds,
                )
                warned = True
            sleep(delay)
            delay = min(delay * 2, 8.0)
