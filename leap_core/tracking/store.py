"""Where MLflow keeps runs when no server is configured.

MLflow 3 refuses its old plain-file store, so the embedded default is a SQLite database
``$LEAP_HOME/mlflow.db`` (``.leap/`` by default) for run metadata, with artifacts under
``$LEAP_HOME/mlruns``. ``MLFLOW_TRACKING_URI`` (or an explicit URI) points elsewhere, e.g.
at an MLflow server.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from leap_core.home import leap_home

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

EXPERIMENT = "leap"


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{leap_home() / 'mlflow.db'}"


def default_artifact_location() -> str:
    return (leap_home() / "mlruns").as_uri()


def experiment_id(client: MlflowClient, name: str = EXPERIMENT) -> str:
    """The id of experiment ``name``, created (with local artifacts when the store is the
    embedded SQLite one) if it does not exist."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    local = client.tracking_uri.startswith("sqlite:")
    return client.create_experiment(
        name, artifact_location=default_artifact_location() if local else None
    )
