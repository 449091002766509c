"""The MLflow links the project prints open the model-training view: a real MLflow server,
a real run logged to it, and real headless Chromium rendering the link ``leap train``
prints (and the demo's experiment link) in a browser that never used the UI before."""

from __future__ import annotations

import re

import pytest

from leap_cli.train import browse_hint
from leap_core.tracking.links import experiment_link
from leap_core.tracking.mlflow_hook import MLflowHook
from leap_core.training.trainer import Trainer
from tests import browser
from tests.mlflow_server import MlflowServer

pytestmark = pytest.mark.process

#: What only the UI's GenAI view draws: its navigation, in MLflow 3.17 and 3.18 alike (the
#: experiment overview beside it changes between releases).
GENAI = ("Evaluation runs", "Prompts &amp; versions")


def visible(dom: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(r"<script.*?</script>", "", dom)))


@pytest.fixture
def server(tmp_path):
    mlflow = MlflowServer(tmp_path / "mlflow")
    mlflow.start()
    yield mlflow
    mlflow.stop()


def test_the_printed_run_link_opens_the_runs_metrics_not_the_genai_pages(
    tiny_spec, tmp_path, server
):
    spec = tiny_spec(train={"epochs": 2}, eval={"protocol": "none"})
    hook = MLflowHook(server.uri, log_model=False)
    trainer = Trainer(spec, tmp_path / "run", [hook])
    trainer.fit()
    run_id, experiment = trainer.mlflow_run_id, hook.experiment_id
    assert run_id is not None and experiment is not None

    hint = browse_hint(server.uri, run_id, experiment)
    link = hint.removeprefix("browse: ")
    assert link == (
        f"{server.uri}/#/experiments/{experiment}/runs/{run_id}?workflowType=machine_learning"
    )
    page = visible(browser.rendered(link, tmp_path / "run-page"))
    assert "tiny-test: synthetic &lt;H4,S3&gt; LEAP-CF seed0" in page
    assert "train_loss" in page and "Model registry" in page  # its metrics, the ML navigation
    assert not [marker for marker in GENAI if marker in page], page[:2000]

    table = visible(browser.rendered(experiment_link(server.uri, experiment), tmp_path / "table"))
    assert "Run Name" in table and "LEAP-CF seed0" in table
    assert not [marker for marker in GENAI if marker in table], table[:2000]

    # The same run without the view's name: a new browser lands on the GenAI pages, which
    # is why every link names it.
    plain = visible(
        browser.rendered(f"{server.uri}/#/experiments/{experiment}", tmp_path / "plain")
    )
    assert all(marker in plain for marker in GENAI) and "Run Name" not in plain, plain[:2000]
