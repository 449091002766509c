"""A real MLflow server that goes away during training: stopped for two epochs and started
again, the run finishes with every step's and every epoch's metrics, in order; stopped for
good, the run fails after the retry window with an error naming the store."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
from mlflow.tracking import MlflowClient

from leap_core.tracking.mlflow_hook import MLflowHook
from leap_core.tracking.retry import TrackingUnavailable
from leap_core.training.hooks import Hook
from leap_core.training.trainer import Trainer
from tests.mlflow_server import MlflowServer

#: Real processes started together (the process-level tests; not in `make test-fast`).
pytestmark = pytest.mark.process


@pytest.fixture
def server(tmp_path, monkeypatch) -> Iterator[MlflowServer]:
    # MLflow's own HTTP retries (minutes by default) would hide the outage from the hook.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    monkeypatch.setenv("LEAP_HOME", str(tmp_path / "home"))
    running = MlflowServer(tmp_path / "mlflow")
    running.start()
    yield running
    running.stop()


class Outage(Hook):
    """Stops the server after epoch ``down`` and starts it again after epoch ``up``."""

    def __init__(self, server: MlflowServer, down: int, up: int | None) -> None:
        self.server, self.down, self.up = server, down, up

    def on_epoch_end(self, trainer, epoch, metrics):
        if epoch == self.down:
            self.server.stop()
        if epoch == self.up:
            self.server.start()


def test_metrics_logged_while_the_server_is_down_arrive_in_order(
    server, tiny_spec, tmp_path, caplog
):
    spec = tiny_spec(train={"epochs": 4}, eval={"protocol": "none"})
    hook = MLflowHook(server.uri, log_every=1, log_model=False, retry_seconds=120)
    trainer = Trainer(spec, tmp_path / "run", [hook, Outage(server, down=0, up=2)])
    with caplog.at_level(logging.INFO, logger="leap_core.tracking.mlflow_hook"):
        trainer.fit()
    said = [record.getMessage() for record in caplog.records]
    assert any("metrics kept while the tracking store is away" in line for line in said)
    assert any("tracking store back; queued metrics sent" in line for line in said)
    client = MlflowClient(server.uri)
    run = client.get_run(trainer.mlflow_run_id)
    assert run.info.status == "FINISHED"
    steps = trainer.global_step
    assert steps == 16
    lr = client.get_metric_history(run.info.run_id, "step_lr")
    assert [point.step for point in lr] == list(range(1, steps + 1))
    # Kept with the time they were measured, so the history is in time order too.
    assert [point.timestamp for point in lr] == sorted(point.timestamp for point in lr)
    loss = client.get_metric_history(run.info.run_id, "train_loss")
    assert [point.step for point in loss] == [1, 2, 3, 4]
    assert "checkpoints" in {a.path for a in client.list_artifacts(run.info.run_id)}


def test_a_server_that_stays_away_fails_the_run_naming_the_store(server, tiny_spec, tmp_path):
    spec = tiny_spec(train={"epochs": 3}, eval={"protocol": "none"})
    hook = MLflowHook(server.uri, log_every=1, log_model=False, retry_seconds=2)
    trainer = Trainer(spec, tmp_path / "run", [hook, Outage(server, down=0, up=None)])
    started = time.monotonic()
    with pytest.raises(TrackingUnavailable) as raised:
        trainer.fit()
    assert str(raised.value).startswith(f"tracking store {server.uri} unavailable for 2 s while ")
    assert time.monotonic() - started < 60
