"""Tracking calls through an outage: which errors are retried and for how long, what the
final error says, and that the store's password never appears in it."""

from __future__ import annotations

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, TEMPORARILY_UNAVAILABLE
from sqlalchemy.exc import OperationalError

from leap_core.tracking.retry import (
    TrackingUnavailable,
    is_permanent,
    redacted,
    with_tracking_retry,
)

URI = "postgresql+psycopg://leap:s3cret@db:5432/mlflow"


def failing(times: int, error: Exception):
    calls = []

    def call() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise error
        return "logged"

    return call, calls


def test_a_transient_error_is_retried_with_doubling_waits_until_it_passes():
    slept: list[float] = []
    call, calls = failing(3, OperationalError("INSERT", {}, Exception("database is locked")))
    assert with_tracking_retry(call, URI, "logging", 60, sleep=slept.append) == "logged"
    assert (len(calls), slept) == (4, [0.5, 1.0, 2.0])


def test_a_request_mlflow_refuses_is_raised_at_once():
    slept: list[float] = []
    refused = MlflowException("param too long", error_code=INVALID_PARAMETER_VALUE)
    call, calls = failing(5, refused)
    with pytest.raises(MlflowException, match="param too long"):
        with_tracking_retry(call, URI, "logging params", 60, sleep=slept.append)
    assert (len(calls), slept) == (1, [])
    assert is_permanent(refused)
    assert not is_permanent(MlflowException("busy", error_code=TEMPORARILY_UNAVAILABLE))
    assert not is_permanent(ConnectionError("refused"))


def test_past_the_window_the_error_names_the_store_without_its_password():
    slept: list[float] = []
    call, calls = failing(100, ConnectionError("Connection refused"))
    with pytest.raises(TrackingUnavailable) as raised:
        with_tracking_retry(call, URI, "creating the run", 3.0, sleep=slept.append)
    message = str(raised.value)
    assert message == (
        "tracking store postgresql+psycopg://leap:***@db:5432/mlflow unavailable for 3 s "
        "while creating the run (LEAP_TRACKING_RETRY_SECONDS): ConnectionError: "
        "Connection refused"
    )
    assert "s3cret" not in message
    # Without real sleeping the clock barely moves, so the window is never reached by
    # time alone: the waits (0.5, 1, 2, 4, …) are taken until one would pass it.
    assert slept[:3] == [0.5, 1.0, 2.0]
    assert len(calls) == len(slept) + 1


def test_no_window_means_one_try():
    call, calls = failing(1, ConnectionError("down"))
    with pytest.raises(TrackingUnavailable, match="unavailable for 0 s"):
        with_tracking_retry(call, "http://mlflow:5000", "logging", 0.0, sleep=lambda s: None)
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("http://user:pw@mlflow:5000", "http://user:***@mlflow:5000"),
        ("sqlite:////tmp/x/mlflow.db", "sqlite:////tmp/x/mlflow.db"),
        ("http://mlflow:5000", "http://mlflow:5000"),
    ],
)
def test_redacted(uri: str, shown: str):
    assert redacted(uri) == shown
