"""Logs a training run to MLflow: params, metrics, plots, checkpoint and model.

One MLflow run per training run; a resumed run continues the same MLflow run (its id
travels in the checkpoint). Step metrics are logged every ``log_every`` steps against the
global step; epoch metrics (and evaluation) against the epoch number.

The tracking store may be away for a while (a server restarting, a SQLite file locked by
another writer): every call is retried with backoff for up to ``retry_seconds``
(:mod:`leap_core.tracking.retry`). Metrics logged meanwhile are kept, in order, and sent
with the next call that gets through, so training does not wait on the store; if it is
still away after the window, the run fails with
:class:`~leap_core.tracking.retry.TrackingUnavailable`, naming the store.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# MLflow writes "View run … at: …" on stdout each time a run ends (twice per run here: the
# model upload ends one too), which breaks `--json` output; the callers print the link.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

import mlflow
import numpy as np

from leap_core.evaluation import plots
from leap_core.run_names import dataset_label, long_tail_label, method_label, run_title
from leap_core.spec_paths import flatten
from leap_core.tracking import store
from leap_core.tracking.retry import (
    TrackingUnavailable,
    is_permanent,
    unavailable,
    with_tracking_retry,
)
from leap_core.tracking.summary import HEADLINE, summary_html
from leap_core.training.checkpoint_shards import SHARDED_NAME
from leap_core.training.checkpoint_store import latest_checkpoint
from leap_core.training.hooks import Hook, StepInfo, finite_metrics
from leap_core.training.trainer import Trainer, TrainingCancelled, TrainingPreempted

logger = logging.getLogger(__name__)
T = TypeVar("T")
#: Metrics per ``log_batch`` call (MLflow accepts at most 1000).
BATCH = 1000


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
    on_run: called with the run's id and its experiment's once the run exists (created,
        or resumed from the checkpoint), e.g. to link a job to it before training ends.
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment: str = store.EXPERIMENT,
        log_every: int = 10,
        log_model: bool = True,
        tags: dict[str, str] | None = None,
        on_run: Callable[[str, str], None] | None = None,
        retry_seconds: float = 60.0,
    ) -> None:
        self.tracking_uri = tracking_uri or store.default_tracking_uri()
        self.experiment = experiment
        self.log_every = log_every
        self.log_model = log_model
        self.tags = dict(tags or {})
        self.on_run = on_run
        self.retry_seconds = retry_seconds
        self.client = self._call("opening the store", lambda: store.open_client(self.tracking_uri))
        self.run_id: str | None = None
        #: The run's experiment, once the run exists (for links into the UI).
        self.experiment_id: str | None = None
        #: ``models:/NAME@ALIAS`` and the version number, once the model is registered.
        self.registered: str | None = None
        self.registered_version: str | None = None
        self._pending: list[mlflow.entities.Metric] = []
        self._away_since: float | None = None
        self._next_try = 0.0

    def _call(self, what: str, call: Callable[[], T]) -> T:
        """A tracking call, retried while the store is away (see the module docstring)."""
        return with_tracking_retry(call, self.tracking_uri, what, self.retry_seconds)

    def _announce(self, run_id: str, experiment_id: str) -> None:
        self.experiment_id = experiment_id
        if self.on_run is not None:
            self.on_run(run_id, experiment_id)

    def on_start(self, trainer: Trainer) -> None:
        spec = trainer.spec
        if trainer.mlflow_run_id:
            self.run_id = trainer.mlflow_run_id
            run_id = self.run_id
            self._call("resuming the run", lambda: self.client.update_run(run_id, "RUNNING"))
            run = self._call("reading the run", lambda: self.client.get_run(run_id))
            self._announce(run_id, run.info.experiment_id)
            return
        tags = {
            "method": method_label(spec),
            "dataset": dataset_label(spec),
            "long_tail": long_tail_label(spec),
            "seed": str(spec.train.seed),
            "mlflow.runName": run_title(spec),
            **self.tags,
        }
        if spec.name:
            tags["job_name"] = spec.name
        experiment = self._call(
            "opening the experiment", lambda: store.experiment_id(self.client, self.experiment)
        )
        run = self._call(
            "creating the run",
            lambda: self.client.create_run(experiment, run_name=run_title(spec), tags=tags),
        )
        run_id = self.run_id = trainer.mlflow_run_id = run.info.run_id
        self._announce(run_id, experiment)
        params = flatten(spec)
        params.update(
            {
                "data.num_classes": str(trainer.data.manifest.num_classes),
                "data.train_images": str(len(trainer.data.manifest.records)),
                "data.head_classes": str(trainer.split.head_classes),
                "data.decoded_in_memory": str(trainer.data.decoded).lower(),
            }
        )
        params.update(trainer.split.params())
        params.update(trainer.distributed_params())
        entities = [mlflow.entities.Param(k, v[:6000]) for k, v in params.items()]
        self._call("logging params", lambda: self.client.log_batch(run_id, params=entities))
        with tempfile.TemporaryDirectory() as folder:
            spec_path = Path(folder) / "spec.json"
            spec_path.write_text(json.dumps(spec.model_dump(mode="json"), indent=2))
            manifest_path = Path(folder) / "manifest.json"
            trainer.data.manifest.save(manifest_path)
            self._artifact(spec_path)
            self._artifact(manifest_path)

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
        # The trainer put the cloud's counts among the final metrics (summed over the ranks
        # of a sharded run, which asking the cloud again from rank 0 alone could not do).
        counts = {k: v for k, v in metrics.items() if k.startswith("cloud_") and "classes" in k}
        self._log(counts, trainer.epoch)
        self._flush(wait=True)
        with tempfile.TemporaryDirectory() as folder:
            drawn = draw_plots(trainer, Path(folder)) if trainer.spec.tracking.plots else []
            for path in drawn:
                self._artifact(path, "plots")
            page = Path(folder) / "summary.html"
            spec = trainer.spec
            page.write_text(
                summary_html(
                    run_title(spec),
                    f"{spec.train.epochs} epochs, {trainer.data.manifest.num_classes} classes "
                    f"({trainer.split.head_classes} head), "
                    f"{len(trainer.data.manifest.records)} training images",
                    {**trainer.last_metrics, **metrics},
                    drawn,
                )
            )
            self._artifact(page)
        checkpoint = latest_checkpoint(trainer.run_dir)
        if checkpoint is not None and checkpoint.is_file():
            self._artifact(checkpoint, "checkpoints")
        elif checkpoint is not None:  # a sharded run's generation: its folder, as it is
            self._artifacts(checkpoint, f"checkpoints/{SHARDED_NAME}")
        if self.log_model and trainer.spec.tracking.log_model:
            model_uri = self._call("logging the model", lambda: self._log_model(trainer))
            if trainer.spec.tracking.register_model:
                self._call("registering the model", lambda: self._register(model_uri, trainer))
        run_id = self._run()
        self._call("ending the run", lambda: self.client.set_terminated(run_id, "FINISHED"))

    def on_failure(self, trainer: Trainer, error: BaseException) -> None:
        """Best effort: mark the run failed (or killed). When the store itself is what
        failed, or fails now, the run stays as it was; the job's own record says why."""
        if self.run_id is None or isinstance(error, TrackingUnavailable):
            return
        stopped = TrainingCancelled | TrainingPreempted | KeyboardInterrupt
        status = "KILLED" if isinstance(error, stopped) else "FAILED"
        try:
            self._flush(wait=False)
            # A preemption is no error: the run goes on when it is resumed.
            tag = "preempted" if isinstance(error, TrainingPreempted) else "error"
            self.client.set_tag(self.run_id, tag, f"{type(error).__name__}: {error}"[:5000])
            self.client.set_terminated(self.run_id, status)
        except Exception:
            logger.warning("run %s: could not be marked %s", self.run_id, status, exc_info=True)

    def _run(self) -> str:
        if self.run_id is None:
            raise RuntimeError("the MLflow run is used before on_start created it")
        return self.run_id

    def _artifact(self, path: Path, folder: str | None = None) -> None:
        run_id = self._run()
        self._call(
            f"logging {path.name}", lambda: self.client.log_artifact(run_id, str(path), folder)
        )

    def _artifacts(self, path: Path, folder: str) -> None:
        """Every file of the folder ``path``, under ``folder``."""
        run_id = self._run()
        self._call(
            f"logging {path.name}", lambda: self.client.log_artifacts(run_id, str(path), folder)
        )

    def _log(self, metrics: dict[str, float], step: int) -> None:
        """Queue the metrics and send what is queued; training goes on while the store is
        away, until it has been away longer than ``retry_seconds``."""
        now = mlflow.utils.time.get_current_time_millis()
        self._pending += [
            mlflow.entities.Metric(metric_name(k), v, now, step)
            for k, v in finite_metrics(metrics).items()
        ]
        self._flush(wait=False)

    def _send_pending(self) -> None:
        """Send the queued metrics in order, in batches MLflow accepts, dropping each batch
        once it is stored (so a batch is never sent twice)."""
        run_id = self._run()
        while self._pending:
            batch = self._pending[:BATCH]
            self.client.log_batch(run_id, metrics=batch)
            del self._pending[: len(batch)]

    def _flush(self, wait: bool) -> None:
        if not self._pending:
            return
        if wait:
            self._call("sending metrics", self._send_pending)
            self._away_since = None
            return
        now = time.monotonic()
        if self._away_since is not None and now < self._next_try:
            return  # the store was away a moment ago: let training go on
        try:
            self._send_pending()
        except Exception as error:
            if is_permanent(error):
                raise
            if self._away_since is None:
                self._away_since = now
                logger.warning(
                    "run %s: metrics kept while the tracking store is away (%s)",
                    self.run_id,
                    type(error).__name__,
                )
            away = now - self._away_since
            if away > self.retry_seconds:
                raise unavailable(
                    self.tracking_uri, self.retry_seconds, "sending metrics", error
                ) from error
            self._next_try = now + min(8.0, 0.5 * 2 ** min(away, 4))
            return
        if self._away_since is not None:
            logger.info("run %s: tracking store back; queued metrics sent", self.run_id)
        self._away_since = None

    def _log_model(self, trainer: Trainer) -> str:
        """The embedding network in MLflow's safe ``pt2`` format (an exported graph), so
        loading it never unpickles code."""
        height, width = trainer.spec.dataset.image_size
        model = trainer.model.eval().cpu().float()
        example = torch.randn(2, 3, height, width).numpy()
        mlflow.set_tracking_uri(self.tracking_uri)  # the fluent API below reads the global
        with mlflow.start_run(run_id=self.run_id):
            logged = mlflow.pytorch.log_model(
                model,
                name="model",
                input_example=example,
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
            )
        trainer.model.to(trainer.device)
        return str(logged.model_uri)

    def _register(self, model_uri: str, trainer: Trainer) -> None:
        """A new version of ``tracking.register_model`` from the logged model, tagged with
        what the run was and how it scored, and the alias moved to it: the next step of a
        pipeline loads ``models:/NAME@ALIAS`` and finds on the version what it is."""
        tracking = trainer.spec.tracking
        name = tracking.register_model
        assert name is not None
        version = mlflow.register_model(model_uri, name, tags=version_tags(trainer))
        self.client.set_registered_model_alias(name, tracking.register_alias, version.version)
        self.registered = f"models:/{name}@{tracking.register_alias}"
        self.registered_version = str(version.version)


def version_tags(trainer: Trainer) -> dict[str, str]:
    """A registered version's tags: the run's method, dataset, long-tail setting, seed and
    run id, and its headline metrics (those of the summary page the run has)."""
    spec = trainer.spec
    tags = {
        "method": method_label(spec),
        "dataset": dataset_label(spec),
        "long_tail": long_tail_label(spec),
        "seed": str(spec.train.seed),
        "run_id": str(trainer.mlflow_run_id),
    }
    metrics = finite_metrics(trainer.last_metrics)
    tags.update({key: f"{metrics[key]:.6g}" for key, _, _ in HEADLINE if key in metrics})
    return tags


def draw_plots(trainer: Trainer, folder: Path) -> list[Path]:
    """The run's figures: class frequencies, angular variance against class size, t-SNE of
    a few head and tail classes (paper Fig. 1), and the CMC or ROC curve of the last
    evaluation."""
    manifest = trainer.data.manifest
    label = method_label(trainer.spec)
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
