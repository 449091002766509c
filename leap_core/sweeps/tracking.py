"""MLflow grouping for a sweep: one parent run per sweep, one child run per cell.

The parent's id is kept in ``<output>/sweep.json`` so a resumed sweep adds its new cells
under the same parent. Children are ordinary training runs logged by
:class:`~leap_core.tracking.mlflow_hook.MLflowHook`; they join the parent through the
``mlflow.parentRunId`` tag, which is how the MLflow UI nests runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from mlflow.exceptions import MlflowException

from leap_core.sweeps.grid import Cell
from leap_core.sweeps.sweepfile import SweepFile
from leap_core.tracking import store
from leap_core.tracking.mlflow_hook import MLflowHook


class SweepTracker:
    """The sweep's parent run; hands out child hooks and logs the table at the end."""

    def __init__(
        self,
        sweep: SweepFile,
        output: Path,
        tracking_uri: str | None = None,
        log_model: bool = False,
    ) -> None:
        self.sweep = sweep
        self.tracking_uri = tracking_uri or store.default_tracking_uri()
        self.log_model = log_model
        self.client = store.open_client(self.tracking_uri)
        self.state_path = output / "sweep.json"
        self.parent_id = self._parent(output)

    def _parent(self, output: Path) -> str:
        state = json.loads(self.state_path.read_text()) if self.state_path.is_file() else {}
        known = state.get("mlflow_parent_run_id")
        if known and state.get("tracking_uri") == self.tracking_uri:
            try:
                self.client.get_run(known)
                self.client.update_run(known, status="RUNNING")
                return known
            except MlflowException:
                pass  # deleted or another store: start a new parent below
        experiment = store.experiment_id(self.client, self.sweep.experiment)
        split = "validation" if self.sweep.validation else "test"
        run = self.client.create_run(
            experiment,
            run_name=f"sweep {self.sweep.name}",
            tags={"sweep": self.sweep.name, "sweep.role": "parent", "sweep.split": split},
        )
        self.client.log_dict(run.info.run_id, self.sweep.model_dump(mode="json"), "sweep.json")
        output.mkdir(parents=True, exist_ok=True)
        self.state_path.write_text(
            json.dumps(
                {"mlflow_parent_run_id": run.info.run_id, "tracking_uri": self.tracking_uri},
                indent=1,
            )
        )
        return run.info.run_id

    def child_hook(self, cell: Cell) -> MLflowHook:
        tags = {
            "mlflow.parentRunId": self.parent_id,
            "sweep": self.sweep.name,
            "sweep.cell": cell.id,
            "sweep.split": "validation" if self.sweep.validation else "test",
            **{f"sweep.axis.{axis}": label for axis, label in cell.labels},
        }
        return MLflowHook(
            self.tracking_uri, self.sweep.experiment, log_model=self.log_model, tags=tags
        )

    def finish(self, artifacts: list[Path], failed: int) -> None:
        for path in artifacts:
            self.client.log_artifact(self.parent_id, str(path))
        self.client.set_terminated(self.parent_id, "FAILED" if failed else "FINISHED")
