"""Convergence is measured: train-set accuracy with the test transform on head and tail
classes, the same on images of the training classes that the cut left out, and how many
classes the cloud could not measure."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

from leap_cli import app
from leap_core.data.transforms import test_transform as evaluation_transform
from leap_core.training import evaluate
from leap_core.training.evaluate import group_accuracy, unseen_records
from leap_core.training.hooks import Hook
from leap_core.training.trainer import Trainer
from tests.tiny import tiny_job


def test_group_accuracy_by_nearest_class_weight():
    weights = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    features = torch.tensor([[2.0, 0.1], [0.1, 3.0], [1.0, 0.2], [-1.0, 0.9], [0.0, -1.0]])
    labels = np.array([0, 1, 1, 2, 2])  # predicted: 0, 1, 0, 2, and 0 (below)
    head = np.array([True, False, False])
    result = group_accuracy("acc", features, labels, weights, head)
    # Sample 4 at (0, −1): cosines (0, −1, 0) → argmax is class 0 (first of the ties).
    assert result == {
        "acc": pytest.approx(3 / 5),
        "acc_head": 1.0,
        "acc_tail": pytest.approx(2 / 4),
    }
    assert math.isnan(group_accuracy("acc", features[:1], labels[:1], weights, head)["acc_tail"])


def test_group_accuracy_in_chunks_equals_one_pass(monkeypatch):
    generator = torch.Generator().manual_seed(0)
    features, weights = (
        torch.randn(50, 8, generator=generator),
        torch.randn(6, 8, generator=generator),
    )
    labels = torch.randint(0, 6, (50,), generator=generator).numpy()
    head = np.array([True, True, False, False, False, False])
    whole = group_accuracy("acc", features, labels, weights, head)
    monkeypatch.setattr(evaluate, "_ROWS_PER_CHUNK", 7)
    assert group_accuracy("acc", features, labels, weights, head) == whole


def cut_spec(tiny_spec, **eval_fields):
    """The tiny set (4 head identities, 20 with 3 images) cut again to <H4,S2>: each tail
    identity has one image the run never trains on."""
    return tiny_spec(
        dataset={"long_tail": {"kind": "reid", "head": 4, "tail_samples": 2}},
        eval={"every_epochs": 0, **eval_fields},
    )


def test_unseen_records_are_the_images_the_cut_left_out(tiny_spec, tmp_path):
    trainer = Trainer(cut_spec(tiny_spec), tmp_path)
    kept = {r.path for r in trainer.data.manifest.records}
    unseen = unseen_records(trainer.data, per_class=5, seed=0)
    assert len(unseen) == 20 and not kept & {r.path for r in unseen}
    assert sorted({r.pid for r in unseen}) == sorted(
        pid
        for pid, head in zip(trainer.data.manifest.pids, trainer.split.head, strict=True)
        if not head
    )
    assert unseen_records(trainer.data, per_class=0, seed=0) == []


class EpochFigures(Hook):
    """Keeps every epoch's metrics."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []

    def on_epoch_end(self, trainer, epoch, metrics) -> None:
        self.epochs.append(dict(metrics))


def average_precision(query: torch.Tensor, gallery: torch.Tensor, matches: np.ndarray) -> float:
    """AP of one query: the mean, over its true matches, of the precision at each."""
    order = np.argsort(-(gallery @ query).numpy(), kind="stable")
    hits = matches[order]
    positions = np.flatnonzero(hits)
    return float(np.mean((np.arange(len(positions)) + 1) / (positions + 1)))


def test_a_run_reports_seen_and_unseen_accuracy_as_computed_independently(tiny_spec, tmp_path):
    epochs = EpochFigures()
    trainer = Trainer(cut_spec(tiny_spec), tmp_path, hooks=[epochs])
    metrics = trainer.fit()
    manifest = trainer.data.manifest
    # Independent recomputation: decode every image with the test transform, embed in eval
    # mode, classify by the nearest normalised class weight.
    transform = evaluation_transform(trainer.spec)
    position = {pid: label for label, pid in enumerate(manifest.pids)}
    weights = F.normalize(trainer.head.weight.detach(), dim=1)
    trainer.model.eval()

    def embed(records):
        images = torch.stack([transform(Image.open(r.path).convert("RGB")) for r in records])
        with torch.no_grad():
            return F.normalize(trainer.model(images), dim=1)

    def accuracy(records):
        predicted = (embed(records) @ weights.T).argmax(1)
        labels = torch.tensor([position[r.pid] for r in records])
        correct = (predicted == labels).numpy()
        head = trainer.split.head[labels.numpy()]
        return correct[head].mean() if head.any() else math.nan, correct[~head].mean()

    head_acc, tail_acc = accuracy(list(manifest.records))
    assert metrics["final_train_accuracy_head"] == pytest.approx(head_acc, abs=1e-9)
    assert metrics["final_train_accuracy_tail"] == pytest.approx(tail_acc, abs=1e-9)
    unseen = unseen_records(trainer.data, 5, trainer.spec.train.seed)
    _, unseen_tail = accuracy(unseen)
    assert metrics["final_unseen_images"] == 20
    assert metrics["final_unseen_accuracy_tail"] == pytest.approx(unseen_tail, abs=1e-9)
    assert math.isnan(metrics["final_unseen_accuracy_head"])  # heads keep all their images
    assert metrics["cloud_single_slot_classes"] == 0
    # The 2-image tail classes cannot be measured under leave_one_out: the single_slot policy
    # gives them the whole target variance.
    assert metrics["cloud_unmeasurable_classes"] == 20
    # The unseen images by class size: every tail class has K = 2 (bin K2-3); each unseen
    # image retrieves its class's training images among all of them.
    assert metrics["final_unseen_accuracy_K2-3"] == pytest.approx(unseen_tail, abs=1e-9)
    assert metrics["final_unseen_images_K2-3"] == 20
    assert not any(name.startswith("final_unseen_images_K11") for name in metrics)
    train_records = list(manifest.records)
    gallery = embed(train_records)
    train_labels = np.array([position[r.pid] for r in train_records])
    queries = embed(unseen)
    expected = np.mean(
        [
            average_precision(query, gallery, train_labels == position[record.pid])
            for query, record in zip(queries, unseen, strict=True)
        ]
    )
    assert metrics["final_unseen_map_K2-3"] == pytest.approx(expected, abs=1e-6)
    assert metrics["final_unseen_map_tail"] == pytest.approx(expected, abs=1e-6)
    # The cloud's share and std over every epoch it was on (epochs 1 and 2 of 3).
    cloud_epochs = epochs.epochs[trainer.criterion.cloud_start_epoch :]
    assert len(cloud_epochs) == 2
    for name in ("fraction", "std"):
        per_epoch = [
            e[f"train_cloud_{name}{'_mean' if name == 'std' else ''}"] for e in cloud_epochs
        ]
        assert metrics[f"cloud_{name}_all_epochs"] == pytest.approx(np.mean(per_epoch), abs=1e-12)
    assert metrics["cloud_std_all_epochs"] > 0


def test_json_output_counts_classes_the_cloud_could_not_measure(
    synthetic_root, tmp_path, monkeypatch
):
    """P = 0.4 gives the 3-image tail classes ceil(1.2) = 2 slots and nothing single-slot;
    P = 0.3 gives them ceil(0.9) = 1: all 20 can never hold two angles."""
    monkeypatch.setenv("LEAP_HOME", str(tmp_path / "home"))
    job = tiny_job(tracking={"plots": False, "log_model": False})
    job["dataset"]["root"] = str(synthetic_root)
    job["method"]["leap"]["P"] = 0.3
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(job))
    result = CliRunner().invoke(app, ["train", str(spec_file), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["cloud_single_slot_classes"] == 20
    assert metrics["cloud_unmeasurable_classes"] == 20
    assert metrics["cloud_classes_without_statistics"] == 20
