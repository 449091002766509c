"""The end-of-run diagnostics embed a bounded, seeded sample of each class's training
images: small (tail) classes whole, large (head) classes cut to ``eval.diagnostics_per_class``."""

from __future__ import annotations

import numpy as np

from leap_core.training.evaluate import diagnostic_sample
from leap_core.training.trainer import Trainer


def test_each_class_keeps_at_most_its_share_drawn_with_the_seed():
    labels = np.array([0] * 100 + [1] * 3 + [2] * 60)
    chosen = diagnostic_sample(labels, 50, seed=0)
    assert np.bincount(labels[chosen]).tolist() == [50, 3, 50]
    assert chosen.tolist() == sorted(set(chosen.tolist()))  # original order, no repeats
    assert set(range(100, 103)) <= set(chosen.tolist())  # the small class whole
    assert np.array_equal(chosen, diagnostic_sample(labels, 50, seed=0))
    assert not np.array_equal(chosen, diagnostic_sample(labels, 50, seed=1))
    assert np.array_equal(diagnostic_sample(labels, None, seed=0), np.arange(len(labels)))


def test_a_run_reports_how_many_images_its_diagnostics_embedded(tiny_spec, tmp_path):
    spec = tiny_spec(train={"epochs": 2}, eval={"protocol": "none", "diagnostics_per_class": 4})
    trainer = Trainer(spec, tmp_path / "run")
    metrics = trainer.fit()
    counts = np.bincount(np.asarray(trainer.data.manifest.labels))
    assert metrics["final_diagnostic_images"] == float(np.minimum(counts, 4).sum())
    assert len(trainer.diagnostics.features) == int(np.minimum(counts, 4).sum())
