"""Logs a training run to MLflow: params, metrics, plots, checkpoint and model.

One MLflow run per training run; a resumed run continues the same MLflow run (its id
travels in the checkpoint). Step metrics are logged every ``log_every`` steps against the
global step; epoch metrics (and evaluation) against the epoch number.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import mlflow
import numpy as np
from mlflow.tracking import MlflowClient

from leap_core.config import flatten
from leap_core.evaluation import plots
from leap_core.tracking import store
from leap_core.training.hooks import Hook, StepInfo, finite_metrics
from leap_core.training.trainer import Trainer, TrainingCancelled


def metric_name(name: str) -> str:
    """An MLflow-legal metric name: MLflow allows letters, digits and ``_ - . /`` and space,
    so ``tpr@fpr=1e-4`` becomes ``tpr_at_fpr_1e-4``."""
    name = name.replace("@", "_at_").replace("=", "_")
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", name)


class MLflowHook(Hook):
    """Args:
    tracking_uri: MLflow tracking URI; default ``MLFLOW_TRACKING_URI`` or the embedded
        SQLite store under ``.leap/``.
    experiment: experiment name.
    log_every: steps between step-metric logs.
    log_model: also log the model with ``mlflow.pytorch`` at the end (when the spec's
        ``tracking.log_model`` agrees).
    tags: extra run tags.
    on_run: called with the run's id once the run exists (created, or resumed from the
        checkpoint), e.g. to show it on a job before training ends.
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment: str = store.EXPERIMENT,
        log_every: int = 10,
        log_model: bool = True,
        tags: dict[str, str] | None = None,
        on_run: Callable[[str], None] | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri or store.default_tracking_uri()
        self.experiment = experiment
        self.log_every = log_every
        self.log_model = log_model
        self.tags = dict(tags or {})
        self.client = MlflowClient(self.tracking_uri)
        self.on_run = on_run
        self.run_id: str | None = None

    def _announce(self, run_id: str) -> None:
        if self.on_run is not None:
            self.on_run(run_id)

    def on_start(self, trainer: Trainer) -> None:
        spec = trainer.spec
        if trainer.mlflow_run_id:
            self.run_id = trainer.mlflow_run_id
            self.client.update_run(self.run_id, status="RUNNING")
            self._announce(self.run_id)
            return
        tags = {
            "method": spec.method_label(),
            "dataset": spec.dataset_label(),
            "long_tail": spec.long_tail_label(),
            "seed": str(spec.train.seed),
            "mlflow.runName": spec.run_name(),
            **self.tags,
        }
        if spec.name:
            tags["job_name"] = spec.name
        run = self.client.create_run(
            store.experiment_id(self.client, self.experiment), run_name=spec.run_name(), tags=tags
        )
        self.run_id = trainer.mlflow_run_id = run.info.run_id
        self._announce(self.run_id)
        params = flatten(spec)
        params.update(
            {
                "data.num_classes": str(trainer.data.manifest.num_classes),
                "data.train_images": str(len(trainer.data.manifest.records)),
                "data.head_classes": str(trainer.split.head_classes),
            }
        )
        params.update(trainer.split.params())
        self.client.log_batch(
            self.run_id, params=[mlflow.entities.Param(k, v[:6000]) for k, v in params.items()]
        )
        with tempfile.TemporaryDirectory() as folder:
            spec_path = Path(folder) / "spec.json"
            spec_path.write_text(json.dumps(spec.model_dump(mode="json"), indent=2))
            manifest_path = Path(folder) / "manifest.json"
            trainer.data.manifest.save(manifest_path)
            self.client.log_artifact(self.run_id, str(spec_path))
            self.client.log_artifact(self.run_id, str(manifest_path))

    def on_step(self, trainer: Trainer, info: StepInfo) -> None:
        if info.global_step % self.log_every:
            return
        metrics = {f"step_{k}": v for k, v in info.figures.items()}
        metrics.update(step_lr=info.lr, step_images_per_second=info.images_per_second)
        self._log(metrics, info.global_step)

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        self._log(metrics, epoch + 1)

    def on_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        if trainer.diagnostics is not None:
            self._log(trainer.diagnostics.metrics(), trainer.epoch)
        self._log(trainer.cloud_counts(), trainer.epoch)
        if trainer.spec.tracking.plots:
            with tempfile.TemporaryDirectory() as folder:
                for path in draw_plots(trainer, Path(folder)):
                    self.client.log_artifact(self.run_id, str(path), "plots")
        checkpoint = trainer.run_dir / "last.pt"
        if checkpoint.is_file():
            self.client.log_artifact(self.run_id, str(checkpoint), "checkpoints")
        if self.log_model and trainer.spec.tracking.log_model:
            self._log_model(trainer)
        assert self.run_id is not None  # set by on_start
        self.client.set_terminated(self.run_id, "FINISHED")

    def on_failure(self, trainer: Trainer, error: BaseException) -> None:
        if self.run_id is None:
            return
        status = "KILLED" if isinstance(error, TrainingCancelled | KeyboardInterrupt) else "FAILED"
        self.client.set_tag(self.run_id, "error", f"{type(error).__name__}: {error}"[:5000])
        self.client.set_terminated(self.run_id, status)

    def _log(self, metrics: dict[str, float], step: int) -> None:
        values = {metric_name(k): v for k, v in finite_metrics(metrics).items()}
        if values:
            entities = [
                mlflow.entities.Metric(k, v, mlflow.utils.time.get_current_time_millis(), step)
                for k, v in values.items()
            ]
            assert self.run_id is not None  # set by on_start
            self.client.log_batch(self.run_id, metrics=entities)

    def _log_model(self, trainer: Trainer) -> None:
        """The embedding network in MLflow's safe ``pt2`` format (an exported graph), so
        loading it never unpickles code."""
        height, width = trainer.spec.dataset.image_size
        model = trainer.model.eval().cpu().float()
        example = torch.randn(2, 3, height, width).numpy()
        mlflow.set_tracking_uri(self.tracking_uri)  # the fluent API below reads the global
        with mlflow.start_run(run_id=self.run_id):
            mlflow.pytorch.log_model(
                model,
                name="model",
                input_example=example,
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
            )
        trainer.model.to(trainer.device)


def draw_plots(trainer: Trainer, folder: Path) -> list[Path]:
    """The run's figures: class frequencies, angular variance against class size, t-SNE of
    a few head and tail classes (paper Fig. 1), and the CMC or ROC curve of the last
    evaluation."""
    manifest = trainer.data.manifest
    label = trainer.spec.method_label()
    drawn = [
        plots.plot_class_frequency(
            list(manifest.class_counts),
            folder / "class_frequency.png",
            head=trainer.split.head.tolist(),
        )
    ]
    diagnostics = trainer.diagnostics
    if diagnostics is not None:
        drawn.append(
            plots.plot_angular_variance(
                diagnostics.stats,
                diagnostics.head,
                folder / "angular_variance.png",
                title=f"Intra-class angular variance vs class size ({label})",
            )
        )
        head_ids = np.flatnonzero(trainer.split.head).tolist()
        drawn.append(
            plots.plot_tsne(
                diagnostics.features.numpy(),
                diagnostics.labels,
                head_ids,
                folder / "tsne.png",
                seed=trainer.spec.train.seed,
                title=f"t-SNE of training embeddings ({label}): head (dots), tail (triangles)",
            )
        )
    evaluation = trainer.last_evaluation
    if evaluation is not None and evaluation.cmc is not None:
        drawn.append(plots.plot_cmc({label: evaluation.cmc}, folder / "cmc.png"))
    if evaluation is not None and evaluation.scores is not None:
        drawn.append(plots.plot_roc(evaluation.scores, evaluation.same, folder / "roc.png"))
    return drawn
