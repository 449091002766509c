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
from leap_core.training import data_setup, evaluate
from leap_core.training.evaluate import group_accuracy, unseen_records
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


def test_a_run_reports_seen_and_unseen_accuracy_as_computed_independently(tiny_spec, tmp_path):
    trainer = Trainer(cut_spec(tiny_spec), tmp_path)
    metrics = trainer.fit()
    manifest = trainer.data.manifest
    # Independent recomputation: decode every image with the test transform, embed in eval
    # mode, classify by the nearest normalised class weight.
    transform = data_setup.test_transform(trainer.spec)
    position = {pid: label for label, pid in enumerate(manifest.pids)}
    weights = F.normalize(trainer.head.weight.detach(), dim=1)
    trainer.model.eval()

    def accuracy(records):
        images = torch.stack([transform(Image.open(r.path).convert("RGB")) for r in records])
        with torch.no_grad():
            predicted = (F.normalize(trainer.model(images), dim=1) @ weights.T).argmax(1)
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
    assert metrics["cloud_classes_without_statistics"] == 20
