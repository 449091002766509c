"""The MLflow run of a training run, read back through the MLflow client."""

from __future__ import annotations

import math
from pathlib import Path

import mlflow
import mlflow.pytorch
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from leap_core.spec_paths import flatten
from leap_core.tracking.mlflow_hook import MLflowHook
from leap_core.training.hooks import Hook
from leap_core.training.trainer import Trainer


@pytest.fixture
def tracking_uri(tmp_path, monkeypatch):
    monkeypatch.setenv("LEAP_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    uri = f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}"
    yield uri
    mlflow.set_tracking_uri(None)


def test_run_holds_params_metrics_tags_and_artifacts(tiny_spec, tmp_path, tracking_uri):
    spec = tiny_spec(
        train={"epochs": 2},
        method={"leap": {"mode": "full", "cloud_start_epoch": 1}},
        eval={"every_epochs": 1},
    )
    hook = MLflowHook(tracking_uri, log_every=2)
    trainer = Trainer(spec, tmp_path / "run", [hook])
    final = trainer.fit()

    client = MlflowClient(tracking_uri)
    run = client.get_run(trainer.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "tiny-test: synthetic <H4,S3> LEAP-CF seed0"  # the job's name first
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert run.data.tags["method"] == "LEAP-CF"
    assert run.data.tags["long_tail"] == "<H4,S3>"
    params = run.data.params
    for key, value in flatten(spec).items():
        assert params[key] == value, key
    assert params["data.num_classes"] == "24"
    assert params["train.cache_decoded_mb"] == "2048"
    assert params["data.decoded_in_memory"] == "true"  # 24 small images fit the budget
    assert params["distributed.world_size"] == "1" and params["distributed.sharding"] == "none"
    assert (params["split.rule"], params["split.head_classes"], params["split.tail_classes"]) == (
        "cut",
        "4",
        "20",
    )

    loss_history = client.get_metric_history(run.info.run_id, "step_loss")
    assert [m.step for m in loss_history] == [2, 4, 6, 8]
    rank1 = client.get_metric_history(run.info.run_id, "rank1")
    assert [m.step for m in rank1] == [1, 2]
    assert rank1[-1].value == pytest.approx(final["rank1"])
    tail_var = client.get_metric_history(run.info.run_id, "train_tail_angular_variance")
    assert len(tail_var) == 2 and all(math.isfinite(m.value) for m in tail_var)

    head_variance = client.get_metric_history(run.info.run_id, "final_head_angle_variance")
    assert [m.value for m in head_variance] == [pytest.approx(final["final_head_angle_variance"])]
    for name in (
        "final_train_accuracy_head",
        "final_train_accuracy_tail",
        "cloud_single_slot_classes",
        "cloud_classes_without_statistics",
    ):
        history = client.get_metric_history(run.info.run_id, name)
        assert [m.value for m in history] == [pytest.approx(final[name])], name

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"spec.json", "manifest.json", "checkpoints", "plots", "summary.html"} <= artifacts
    page = Path(
        client.download_artifacts(run.info.run_id, "summary.html", str(tmp_path))
    ).read_text()
    assert "<h1>tiny-test: synthetic &lt;H4,S3&gt; LEAP-CF seed0</h1>" in page
    assert f"<th>mAP</th><td>{final['mAP']:.1%}</td>" in page
    assert page.count("<img ") == 4 and page.count("data:image/png;base64,") == 4
    plots = {a.path: a.file_size for a in client.list_artifacts(run.info.run_id, "plots")}
    assert set(plots) == {
        f"plots/{name}.png" for name in ("class_frequency", "angular_variance", "tsne", "cmc")
    }
    assert min(plots.values()) > 10_000  # rendered figures, not empty files
    assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")] == [
        "checkpoints/last.pt"
    ]
    models = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id], output_format="list"
    )
    assert [m.source_run_id for m in models] == [run.info.run_id]
    # The logged model loads with MLflow alone and gives the trained network's embeddings.
    loaded = mlflow.pytorch.load_model(models[0].model_uri)
    images = torch.randn(3, 3, *spec.dataset.image_size)
    trainer.model.eval().cpu()
    with torch.no_grad():
        expected = trainer.model(images)
    assert torch.allclose(torch.as_tensor(loaded(images)), expected, atol=1e-5)


def test_failed_run_is_marked_failed_with_the_reason(tiny_spec, tmp_path, tracking_uri):
    from leap_core.training.hooks import Hook

    class Explode(Hook):
        def on_step(self, trainer, info):
            raise RuntimeError("disk on fire")

    spec = tiny_spec(eval={"protocol": "none"})
    trainer = Trainer(
        spec, tmp_path / "run", [MLflowHook(tracking_uri, log_model=False), Explode()]
    )
    with pytest.raises(RuntimeError, match="disk on fire"):
        trainer.fit()
    run = MlflowClient(tracking_uri).get_run(trainer.mlflow_run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["error"] == "RuntimeError: disk on fire"


def test_tracking_switches_leave_out_plots_and_model(tiny_spec, tmp_path, tracking_uri):
    spec = tiny_spec(eval={"protocol": "none"}, tracking={"plots": False, "log_model": False})
    trainer = Trainer(spec, tmp_path / "run", [MLflowHook(tracking_uri)])
    trainer.fit()
    client = MlflowClient(tracking_uri)
    run = client.get_run(trainer.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["tracking.plots"] == "False"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert artifacts == {"spec.json", "manifest.json", "checkpoints", "summary.html"}
    assert (
        mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
        == []
    )


def test_on_run_hears_the_run_id_before_any_other_hook_starts_and_again_on_resume(
    tiny_spec, tmp_path, tracking_uri
):
    """``on_run`` is how a job row learns its run and the run's experiment: it is called once
    the run exists, before the hooks listed after it start (so their order does not
    matter), and on a resumed run with the same ids."""
    heard: list[tuple[str, ...]] = []

    class Starts(Hook):
        def on_start(self, trainer):
            heard.append(("start", trainer.mlflow_run_id))

    spec = tiny_spec(train={"epochs": 2}, eval={"protocol": "none"})
    hook = MLflowHook(
        tracking_uri,
        log_model=False,
        on_run=lambda run, experiment: heard.append(("run", run, experiment)),
    )
    run_dir = tmp_path / "run"
    first = Trainer(
        spec.model_copy(update={"train": spec.train.model_copy(update={"epochs": 1})}),
        run_dir,
        [Starts(), hook],
    )
    first.fit()
    run_id = first.mlflow_run_id
    experiment = MlflowClient(tracking_uri).get_run(run_id).info.experiment_id
    assert heard == [("start", None), ("run", run_id, experiment)]
    resumed = Trainer(spec, run_dir, [hook, Starts()])
    resumed.fit(run_dir / "last.pt")
    assert heard[2:] == [("run", run_id, experiment), ("start", run_id)]
    assert MlflowClient(tracking_uri).get_run(run_id).info.status == "FINISHED"


def test_a_local_store_whose_experiment_lives_behind_a_server_is_a_clear_error(tracking_uri):
    """A store an older MLflow server made, with artifacts addressed as ``mlflow-artifacts:``:
    logging to it directly cannot store artifacts, so it is refused at once, saying what to
    do, rather than failing in the middle of the run."""
    from leap_core.tracking import store
    from leap_core.tracking.retry import TrackingMisconfigured, is_permanent

    client = MlflowClient(tracking_uri)
    client.create_experiment("leap", artifact_location="mlflow-artifacts:/1")
    with pytest.raises(TrackingMisconfigured) as raised:
        store.experiment_id(client)
    assert str(raised.value) == (
        f"experiment 'leap' in {tracking_uri} keeps its artifacts behind an MLflow server "
        f"(mlflow-artifacts:/1); log through that server (start it, or set "
        f"MLFLOW_TRACKING_URI to its address), or use another LEAP_HOME"
    )
    assert is_permanent(raised.value)


def test_registered_versions_carry_the_run_and_load_by_alias_as_the_checkpoint_does(
    tiny_spec, tmp_path, tracking_uri, synthetic_root
):
    from typer.testing import CliRunner

    from leap_cli import app
    from leap_core.inference.embedder import Embedder, image_files
    from leap_core.inference.gallery import Gallery

    spec = tiny_spec(
        train={"epochs": 2},
        eval={"every_epochs": 0},
        tracking={"plots": False, "register_model": "tiny-leap"},
    )
    trainers = []
    for seed in (0, 1):  # two runs: versions 1 and 2, the alias on the second
        seeded = spec.model_copy(update={"train": spec.train.model_copy(update={"seed": seed})})
        hook = MLflowHook(tracking_uri)
        trainers.append(Trainer(seeded, tmp_path / f"run{seed}", [hook]))
        trainers[-1].fit()
        assert hook.registered == "models:/tiny-leap@newest"
        assert hook.registered_version == str(seed + 1)
    client = MlflowClient(tracking_uri)
    newest = client.get_model_version_by_alias("tiny-leap", "newest")
    trainer = trainers[1]
    assert str(newest.version) == "2" and newest.run_id == trainer.mlflow_run_id
    tags = newest.tags
    assert (tags["method"], tags["dataset"], tags["long_tail"], tags["seed"]) == (
        "LEAP-CF",
        "synthetic",
        "<H4,S3>",
        "1",
    )
    assert float(tags["mAP"]) == pytest.approx(trainer.last_metrics["mAP"], rel=1e-5)
    assert float(tags["rank1"]) == pytest.approx(trainer.last_metrics["rank1"], rel=1e-5)
    assert client.get_model_version("tiny-leap", "1").run_id == trainers[0].mlflow_run_id

    # MLflow alone, by alias, gives the trained network's embeddings ...
    images = torch.randn(3, 3, *spec.dataset.image_size)
    trainer.model.eval().cpu()
    with torch.no_grad():
        expected = trainer.model(images)
    loaded = mlflow.pytorch.load_model("models:/tiny-leap@newest")
    assert torch.allclose(torch.as_tensor(loaded(images)), expected, atol=1e-5)
    # ... and leap embeds a folder from the registered model as from the checkpoint.
    files = image_files(synthetic_root / "query")[:4]
    by_alias = Embedder.from_checkpoint("models:/tiny-leap@newest").embed(files)
    by_file = Embedder.from_checkpoint(tmp_path / "run1" / "last.pt").embed(files)
    assert np.allclose(by_alias, by_file, atol=1e-6)
    assert np.allclose(
        Embedder.from_checkpoint("models:/tiny-leap/1").embed(files)[0],
        Embedder.from_checkpoint(tmp_path / "run0" / "last.pt").embed(files)[0],
        atol=1e-6,
    )
    runner = CliRunner()
    out = tmp_path / "gallery.npz"
    embedded = runner.invoke(
        app, ["embed", "models:/tiny-leap@newest", str(synthetic_root / "query"), "--out", str(out)]
    )
    assert embedded.exit_code == 0, embedded.output
    assert Gallery.load(out).checkpoint.as_posix() == "models:/tiny-leap@newest"
    script = tmp_path / "served.pt"
    exported = runner.invoke(
        app, ["export", "models:/tiny-leap@newest", "--format", "torchscript", "--out", str(script)]
    )
    assert exported.exit_code == 0, exported.output
    assert torch.allclose(torch.jit.load(str(script))(images), expected, atol=1e-5)
    missing = runner.invoke(
        app,
        ["embed", "models:/tiny-leap@champion", str(tmp_path), "--out", str(tmp_path / "x")],
    )
    assert missing.exit_code == 2
    assert "models:/tiny-leap@champion:" in missing.output and "champion" in missing.output
