"""The cloud-controls report applies its fixed rules: validity, the best noise level, and
whether per-class statistics beat both controls."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tests.sweeps.cells import finished_cell

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "cloud_controls_report.py"
WOBBLE = [0.0, 0.01, -0.01, 0.005, -0.004, 0.002]


def load_report():
    spec = importlib.util.spec_from_file_location("cloud_controls_report", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cell(folder: Path, arm: str, seed: int, mAP: float, **metrics: float) -> None:
    finished_cell(
        {"method": arm},
        seed,
        {"mAP": mAP, "rank1": mAP + 0.3, "final_train_accuracy_tail": 0.97, **metrics},
        folder,
    )


def test_levels_are_multiples_of_leap_cfs_mean_std(tmp_path):
    module = load_report()
    for seed, std in enumerate([0.12, 0.14]):
        cell(tmp_path, "LEAP-CF", seed, 0.3, cloud_std_all_epochs=std)
    text = module.levels_report(module.order(module.results_by_arm(tmp_path)))
    assert "mean 0.1300 rad over 2 seeds" in text
    assert "noise 0.5x: constant_std 0.0650" in text and "noise 3x: constant_std 0.3900" in text


def test_the_noise_curve_names_the_best_level_and_judges_leap_against_it(tmp_path):
    module = load_report()
    # Levels 0.5x-3x gain +0.5, +1.0, +1.5, +0.8 points; LEAP-CF gains +1.0.
    gains = {"noise 0.5x": 0.005, "noise 1x": 0.010, "noise 2x": 0.015, "noise 3x": 0.008}
    for seed, wobble in enumerate(WOBBLE):
        base = 0.30 + wobble
        cell(tmp_path, "CosFace", seed, base)
        cell(tmp_path, "LEAP-CF", seed, base + 0.010 + wobble / 10, cloud_std_all_epochs=0.13)
        for arm, gain in gains.items():
            cell(tmp_path, arm, seed, base + gain, cloud_std_all_epochs=0.13)
    text = module.noise_curve_report(module.order(module.results_by_arm(tmp_path)), None)
    assert "**VALID**" in text
    assert "Best constant level (rule 2): **noise 2x**" in text
    assert "is worse than the best tuned level" in text  # -0.5 points, tight interval
    assert "| LEAP-CF | noise 2x | 6 | -0.50 [" in text


def test_the_varying_tail_verdict_needs_both_controls_beaten(tmp_path):
    module = load_report()
    for seed, wobble in enumerate(WOBBLE):
        base = 0.40 + wobble
        cell(tmp_path, "CosFace", seed, base)
        cell(tmp_path, "LEAP-CF", seed, base + 0.012, **{"final_unseen_map_K2-3": 0.2})
        cell(tmp_path, "LEAP-CF-shuffled", seed, base + 0.004 + wobble / 5)
        cell(tmp_path, "noise 2x", seed, base + 0.011 - wobble / 5)
    text = module.varying_tail_report(module.order(module.results_by_arm(tmp_path)))
    # Above the shuffled control (+0.8 points) but not the constant one (+0.1, wobbling).
    assert "LEAP-CF vs LEAP-CF-shuffled above 0: yes; vs noise 2x above 0: no" in text
    assert "per-class statistics **do not pass the rule**" in text
