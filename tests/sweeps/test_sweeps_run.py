"""Running sweeps for real on a tiny synthetic dataset: results, resuming, MLflow grouping,
the validation split and the command line. No part of the trainer is mocked."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from leap_cli import app
from leap_core.sweeps import SweepError, expand, parse_sweep
from leap_core.sweeps.results import read_result, result_path
from leap_core.sweeps.runner import run_sweep
from leap_core.sweeps.table import to_markdown
from leap_core.sweeps.tracking import SweepTracker


def test_second_invocation_skips_finished_cells(tiny_sweep, tmp_path: Path) -> None:
    sweep = parse_sweep(tiny_sweep())
    cells = expand(sweep, tmp_path)
    output = Path(sweep.output)
    first = run_sweep(sweep, cells, output)
    assert first.ran == ["method=CosFace__seed0", "method=LEAP-CF__seed0"]
    assert first.skipped == [] and first.failed == {}
    stored = read_result(result_path(output, cells[1]))
    assert (stored.method, stored.seed, stored.split) == ("LEAP-CF", 0, "test")
    assert stored.labels == {"method": "LEAP-CF"}
    assert stored.spec == cells[1].spec.model_dump(mode="json")
    assert len(stored.class_counts) == 24 and sum(stored.head) == 4
    assert sorted(set(stored.class_counts)) == [
        3,
        *sorted({c for c in stored.class_counts if c > 3}),
    ]
    assert 0.0 <= stored.metrics["rank1"] <= 1.0
    assert stored.metrics["final_tail_classes"] == 20.0
    assert (output / "results.md").read_text().startswith("| method | seeds | mAP |")
    assert (output / "plots" / "angular_variance_all.png").is_file()
    mtimes = {path: path.stat().st_mtime_ns for path in (output / "cells").glob("*.json")}

    second = run_sweep(sweep, cells, output)
    assert second.ran == [] and second.skipped == first.ran
    assert {path: path.stat().st_mtime_ns for path in mtimes} == mtimes
    assert [(r.metrics["rank1"], r.metrics["mAP"]) for r in second.results] == [
        (r.metrics["rank1"], r.metrics["mAP"]) for r in first.results
    ]
    # The table is rebuilt from the files with the same numbers.
    assert to_markdown(second.rows) == to_markdown(first.rows)


def test_an_interrupted_cell_continues_from_its_checkpoint(tiny_sweep, tmp_path: Path) -> None:
    sweep = parse_sweep(tiny_sweep(axes={"method": {"CosFace": {}}}))
    cells = expand(sweep, tmp_path)
    output = Path(sweep.output)
    first = run_sweep(sweep, cells, output).results[0]
    # Lose the result but keep last.pt (written after the last epoch): the rerun restores the
    # finished trainer instead of training again, and reports the same retrieval numbers.
    result_path(output, cells[0]).unlink()
    again = run_sweep(sweep, cells, output)
    assert again.ran == [cells[0].id]
    assert again.results[0].metrics["rank1"] == first.metrics["rank1"]
    assert again.results[0].metrics["mAP"] == first.metrics["mAP"]


def test_a_changed_spec_under_an_old_output_is_an_error(tiny_sweep, tmp_path: Path) -> None:
    sweep = parse_sweep(tiny_sweep(axes={"method": {"CosFace": {}}}))
    run_sweep(sweep, expand(sweep, tmp_path), Path(sweep.output))
    changed = expand(sweep, tmp_path, {"train.optimizer.lr": 0.001})
    with pytest.raises(
        SweepError,
        match=r"method=CosFace__seed0.json: this cell was run with "
        r"a different spec; delete the file",
    ):
        run_sweep(sweep, changed, Path(sweep.output))


def test_validation_split_trains_without_the_held_out_identities(
    tiny_sweep, tmp_path: Path
) -> None:
    sweep = parse_sweep(
        tiny_sweep(axes={"method": {"CosFace": {}}}, validation={"identities": 6, "seed": 3})
    )
    outcome = run_sweep(sweep, expand(sweep, tmp_path), Path(sweep.output))
    stored = outcome.results[0]
    assert stored.split == "validation"
    assert len(stored.class_counts) == 18  # 24 training identities - 6 held out
    assert stored.metrics["num_valid_queries"] + stored.metrics["num_skipped_queries"] == 6


def test_mlflow_parent_run_groups_the_cells(tiny_sweep, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LEAP_HOME", str(tmp_path / "home"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sweep = parse_sweep(tiny_sweep(axes={"method": {"LEAP-CF": {"method.leap.mode": "full"}}}))
    cells = expand(sweep, tmp_path)
    output = Path(sweep.output)
    try:
        tracker = SweepTracker(sweep, output, uri)
        run_sweep(sweep, cells, output, tracker)
        # A later invocation continues the same parent run (here with nothing left to run).
        resumed = SweepTracker(sweep, output, uri)
        assert resumed.parent_id == tracker.parent_id
        assert run_sweep(sweep, cells, output, resumed).skipped == [cells[0].id]
    finally:
        mlflow.set_tracking_uri(None)
    client = MlflowClient(uri)
    parent = client.get_run(tracker.parent_id)
    assert parent.info.status == "FINISHED"
    assert parent.info.run_name == "sweep tiny"
    artifacts = {item.path for item in client.list_artifacts(tracker.parent_id)}
    assert {"results.md", "results.csv", "sweep.json"} <= artifacts
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{tracker.parent_id}'"
    )
    assert [run.data.tags["sweep.cell"] for run in children] == [cells[0].id]
    child = children[0]
    assert child.data.tags["method"] == "LEAP-CF"
    assert child.data.tags["sweep.axis.method"] == "LEAP-CF"
    assert child.info.status == "FINISHED"
    assert read_result(result_path(output, cells[0])).mlflow_run_id == child.info.run_id


def test_command_line_runs_then_skips(tiny_sweep, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LEAP_HOME", str(tmp_path / "home"))
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(tiny_sweep(axes={"method": {"CosFace": {}}})))
    runner = CliRunner()
    first = runner.invoke(app, ["sweep", str(path), "--no-mlflow", "--threads", "1"])
    assert first.exit_code == 0, first.output
    assert "ran 1, skipped 0 finished, failed 0" in first.output
    second = runner.invoke(app, ["sweep", str(path), "--no-mlflow"])
    assert "ran 0, skipped 1 finished, failed 0" in second.output
    listing = runner.invoke(app, ["sweep", str(path), "--dry-run"])
    assert "method=CosFace__seed0  done" in listing.output
    stored = json.loads((tmp_path / "out" / "cells" / "method=CosFace__seed0.json").read_text())
    assert stored["method"] == "CosFace"


def test_command_line_names_the_bad_field(tiny_sweep, tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text(
        yaml.safe_dump(tiny_sweep(axes={"method": {"LEAP-CV": {"method.leap.mode": "vanilla"}}}))
    )
    result = CliRunner().invoke(app, ["sweep", str(path), "--no-mlflow"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [
        "error: axes.method.LEAP-CV seed 0: method.leap: threshold is required "
        "when mode is 'vanilla'"
    ]


def test_only_selects_cells_and_names_bad_values(tiny_sweep, tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(tiny_sweep(seeds=[0, 1])))
    runner = CliRunner()
    listing = runner.invoke(app, ["sweep", str(path), "--dry-run", "--only", "method=LEAP-CF"])
    assert listing.exit_code == 0, listing.output
    assert [
        line.split()[0] for line in listing.output.splitlines() if line.startswith("method=")
    ] == ["method=LEAP-CF__seed0", "method=LEAP-CF__seed1"]
    bad = runner.invoke(app, ["sweep", str(path), "--dry-run", "--only", "method=ArcFace"])
    assert bad.exit_code == 2
    assert "error: --only method: no value 'ArcFace' (values: ['CosFace', 'LEAP-CF'])" in bad.output
