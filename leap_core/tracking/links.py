"""Links into the MLflow UI that open its model-training view.

MLflow 3's UI has a global switch between its GenAI and model-training views, and a browser
that has never used it starts on GenAI whatever the experiment's kind: a plain run or
experiment link lands on the traces and evaluation pages instead of the runs table. A link
opens the runs table, or a run's metrics, when it names the view (``workflowType``), and a
run link must name the run's experiment too: the UI's redirect from ``#/runs/<id>`` to the
run's page drops the query.

Light on purpose (no MLflow import): the API, the command line and the demo build links.
"""

from __future__ import annotations

#: The query that selects the UI's model-training view.
MODEL_TRAINING_VIEW = "workflowType=machine_learning"


def experiment_link(ui_url: str, experiment_id: str | None = None) -> str:
    """The runs table of an experiment (the list of experiments without one)."""
    where = f"experiments/{experiment_id}" if experiment_id else "experiments"
    return f"{ui_url.rstrip('/')}/#/{where}?{MODEL_TRAINING_VIEW}"


def run_link(ui_url: str, run_id: str, experiment_id: str | None) -> str:
    """A run's page, with its metrics. Without the experiment (a job recorded before the
    experiment was), the UI finds the run but may show it in the GenAI view."""
    if experiment_id is None:
        return f"{ui_url.rstrip('/')}/#/runs/{run_id}?{MODEL_TRAINING_VIEW}"
    return f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?{MODEL_TRAINING_VIEW}"
