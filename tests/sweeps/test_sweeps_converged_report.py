"""The converged Omniglot-LT report applies its fixed rules: validity and the control."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tests.sweeps.cells import finished_cell

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "omniglot_lt_report.py"


def load_report():
    spec = importlib.util.spec_from_file_location("omniglot_lt_report", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.report


def cell(folder: Path, method: str, seed: int, mAP: float, tail_accuracy: float) -> None:
    metrics = {"mAP": mAP, "rank1": mAP + 0.3, "final_train_accuracy_tail": tail_accuracy}
    finished_cell({"method": method}, seed, metrics, folder)


def grid(folder: Path, cosface_tail: float, noise_gain: float) -> None:
    for seed, wobble in enumerate([0.0, 0.01, -0.01, 0.005]):
        base = 0.30 + wobble
        cell(folder, "CosFace", seed, base, cosface_tail)
        cell(folder, "LEAP-CF", seed, base + 0.010 + wobble / 10, 0.96)
        cell(folder, "CosFace+noise", seed, base + noise_gain, 0.96)


def test_leap_helps_only_when_it_beats_the_baseline_and_the_control(tmp_path):
    report = load_report()
    grid(tmp_path / "a", cosface_tail=0.97, noise_gain=0.0)
    text = report(tmp_path / "a")
    assert "→ VALID" in text and "- LEAP-CF: helps" in text
    # Differences 0.010 + wobble/10: mean 0.010125, i.e. +1.01 points.
    assert "| LEAP-CF | CosFace | 4 | +1.01 [" in text
    # The same gain given by plain noise: LEAP-CF no longer passes.
    grid(tmp_path / "b", cosface_tail=0.97, noise_gain=0.010)
    assert "- LEAP-CF: does not pass the rule" in report(tmp_path / "b")


def test_an_underfit_baseline_makes_the_experiment_invalid(tmp_path):
    grid(tmp_path, cosface_tail=0.90, noise_gain=0.0)
    text = load_report()(tmp_path)
    assert "NOT VALID" in text and "do not count (rule 1)" in text
