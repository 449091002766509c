"""The long-tail methods report applies its fixed rules per setting: which methods help,
which beat LEAP-CF, and the recommendation (one method, two within noise, or CosFace)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from tests.sweeps.cells import finished_cell

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
WOBBLE = [0.0, 0.01, -0.01, 0.005, -0.004, 0.002]


@pytest.fixture
def module(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the report imports its sibling script
    path = BENCHMARKS / "long_tail_methods_report.py"
    spec = importlib.util.spec_from_file_location("long_tail_methods_report", path)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    yield loaded
    sys.modules.pop("cloud_controls_report", None)


def cell(folder: Path, setting: str, arm: str, seed: int, mAP: float) -> None:
    metrics = {"mAP": mAP, "rank1": mAP + 0.3, "final_train_accuracy_tail": 0.97}
    finished_cell({"setting": setting, "method": arm}, seed, metrics, folder)


def test_each_setting_gets_its_rules_verdict(module, tmp_path):
    for seed, wobble in enumerate(WOBBLE):
        base = 0.30 + wobble
        # <H20,S3>: label smoothing +1.0 and logit adjustment +0.95 points, both tight, and
        # within noise of each other; LEAP-CF +0.5.
        cell(tmp_path, "<H20,S3>", "CosFace", seed, base)
        cell(tmp_path, "<H20,S3>", "LEAP-CF", seed, base + 0.005)
        cell(tmp_path, "<H20,S3>", "CosFace+LS0.1", seed, base + 0.010 + wobble / 10)
        cell(tmp_path, "<H20,S3>", "CosFace+LA1.0", seed, base + 0.0095 - wobble / 10)
        # exp-IF10: LDAM-CF's gain wobbles around 0; nothing helps.
        cell(tmp_path, "exp-IF10", "CosFace", seed, base)
        cell(tmp_path, "exp-IF10", "LEAP-CF", seed, base - 0.002)
        cell(tmp_path, "exp-IF10", "LDAM-CF", seed, base + wobble / 2)
    settings = module.by_setting(tmp_path)
    assert list(settings["<H20,S3>"]) == ["CosFace", "LEAP-CF", "CosFace+LA1.0", "CosFace+LS0.1"]
    text = module.report(settings)
    assert "| CosFace+LS0.1 | CosFace | 6 | +1.01 [+0.93, +1.08] |" in text
    assert "| CosFace+LS0.1 | LEAP-CF | 6 | +0.50 [" in text
    assert "Rule 3 on <H20,S3>: **CosFace+LS0.1** or **CosFace+LA1.0**" in text
    assert "beating LEAP-CF (rule 2): CosFace+LA1.0, CosFace+LS0.1." in text
    assert "Rule 3 on exp-IF10: no method helps: use **CosFace**; beating LEAP-CF" in text
    assert text.count("**VALID**") == 2


def test_one_clear_winner_is_named_alone(module, tmp_path):
    for seed, wobble in enumerate(WOBBLE):
        base = 0.30 + wobble
        cell(tmp_path, "<H20,S3>", "CosFace", seed, base)
        cell(tmp_path, "<H20,S3>", "CosFace+LS0.1", seed, base + 0.020 + wobble / 20)
        cell(tmp_path, "<H20,S3>", "CosFace+LA1.0", seed, base + 0.010 - wobble / 20)
    assert "Rule 3 on <H20,S3>: **CosFace+LS0.1**;" in module.report(module.by_setting(tmp_path))


def test_setting_limits_the_report_and_an_unknown_one_is_named(module, tmp_path, capsys):
    for seed, wobble in enumerate(WOBBLE):
        cell(tmp_path, "<H20,S3>", "CosFace", seed, 0.30 + wobble)
        cell(tmp_path, "exp-IF10", "CosFace", seed, 0.40 + wobble)
    assert module.main([str(tmp_path), "--setting", "<H20,S3>"]) == 0
    printed = capsys.readouterr().out
    assert "## <H20,S3>" in printed and "exp-IF10" not in printed
    with pytest.raises(
        SystemExit,
        match=r"--setting exp-IF5: no finished cells; the folder "
        r"has <H20,S3>, exp-IF10",
    ):
        module.main([str(tmp_path), "--setting", "exp-IF5"])
