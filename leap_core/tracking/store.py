"""Where MLflow keeps runs when no server is configured.

MLflow 3 refuses its old plain-file store, so the embedded default is a SQLite database
``$LEAP_HOME/mlflow.db`` (``.leap/`` by default) for run metadata, with artifacts under
``$LEAP_HOME/mlruns``. ``MLFLOW_TRACKING_URI`` (or an explicit URI) points elsewhere, e.g.
at an MLflow server.

A store and its experiment are created once. MLflow creates (and migrates) a SQLite store
on the first call that touches it, and that is not safe for two processes at once: the
first call is made under a lock file beside the database, so a second process waits and
then finds the store ready. An experiment that another process has just created is taken
as found, not as an error.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from leap_core.home import leap_home
from leap_core.locks import file_lock

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

EXPERIMENT = "leap"
#: MLflow 3 opens an experiment without this tag in its GenAI view (an empty traces page);
#: tagged as model training, the UI opens on the runs table.
KIND_TAG, TRAINING_KIND = "mlflow.experimentKind", "custom_model_development"


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{leap_home() / 'mlflow.db'}"


def default_artifact_location() -> str:
    return (leap_home() / "mlruns").as_uri()


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI, else None."""
    prefix = "sqlite:///"
    return Path(uri[len(prefix) :]) if uri.startswith(prefix) else None


@contextmanager
def creation_lock(uri: str) -> Iterator[None]:
    """Held while a process may be the one that creates the store: a lock file beside a
    SQLite database; nothing for a server (it serialises its own writes) or a database
    server (``python -m jobs.migrate`` creates that store before the workers start)."""
    path = sqlite_path(uri)
    if path is None:
        yield
        return
    with file_lock(path.with_name(f"{path.name}.lock")):
        yield


def experiment_id(client: MlflowClient, name: str = EXPERIMENT) -> str:
    """The id of experiment ``name``, created (with local artifacts when the store is the
    embedded SQLite one) if it does not exist. The first call of a process opens, and if
    need be creates, the store: it is made under :func:`creation_lock`."""
    from mlflow.exceptions import MlflowException

    from leap_core.tracking.retry import TrackingMisconfigured

    with creation_lock(client.tracking_uri):
        experiment = client.get_experiment_by_name(name)
        local = client.tracking_uri.startswith("sqlite:")
        if experiment is not None:
            if local and experiment.artifact_location.startswith("mlflow-artifacts:"):
                raise TrackingMisconfigured(
                    f"experiment {name!r} in {client.tracking_uri} keeps its artifacts behind "
                    f"an MLflow server ({experiment.artifact_location}); log through that "
                    f"server (start it, or set MLFLOW_TRACKING_URI to its address), or use "
                    f"another LEAP_HOME"
                )
            if experiment.tags.get(KIND_TAG) is None:  # made before the tag, or by hand
                client.set_experiment_tag(experiment.experiment_id, KIND_TAG, TRAINING_KIND)
            return experiment.experiment_id
        try:
            return client.create_experiment(
                name,
                artifact_location=default_artifact_location() if local else None,
                tags={KIND_TAG: TRAINING_KIND},
            )
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        created = client.get_experiment_by_name(name)  # by another process, just now
        if created is None:
            raise RuntimeError(f"experiment {name!r} exists yet cannot be read back")
        return created.experiment_id


def open_client(uri: str) -> MlflowClient:
    """A client of the store at ``uri``. Making one opens the store (and creates and
    migrates a new SQLite one), so it is made under :func:`creation_lock`."""
    from mlflow.tracking import MlflowClient

    with creation_lock(uri):
        return MlflowClient(uri)


def prepare_store(uri: str, name: str = EXPERIMENT) -> str:
    """Create the tracking store at ``uri`` and its experiment now, before anything logs
    to them (the service's migration step and the embedded stack's start-up call this);
    returns the experiment id."""
    return experiment_id(open_client(uri), name)
