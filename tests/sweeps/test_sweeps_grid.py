"""Expanding a sweep file into cells, and the one-line errors of bad sweep files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from leap_core.run_names import long_tail_label, method_label
from leap_core.sweeps import SweepError, expand, load_sweep, parse_sweep

BASE = {
    "dataset": {"format": "omniglot", "long_tail": {"kind": "reid", "head": 100}},
    "model": {"backbone": "tiny_cnn"},
    "train": {"epochs": 10},
}


def sweep_mapping(**fields):
    data = {
        "name": "grid",
        "base": BASE,
        "axes": {
            "setting": {
                "<H100,S3>": {"dataset.long_tail.tail_samples": 3},
                "<H100,S5>": {"dataset.long_tail.tail_samples": 5},
            },
            "method": {
                "CosFace": {"method.head.kind": "cosface"},
                "LEAP-AV": {
                    "method.head.kind": "arcface",
                    "method.leap.mode": "vanilla",
                    "method.leap.threshold": 10,
                    "method.leap.cloud_start_epoch": 4,
                },
            },
        },
        "seeds": [0, 7],
    }
    data.update(fields)
    return data


def test_grid_is_the_product_in_file_order_seed_by_seed(tmp_path: Path) -> None:
    cells = expand(parse_sweep(sweep_mapping()), tmp_path)
    assert [cell.id for cell in cells] == [
        "setting=H100-S3__method=CosFace__seed0",
        "setting=H100-S3__method=LEAP-AV__seed0",
        "setting=H100-S5__method=CosFace__seed0",
        "setting=H100-S5__method=LEAP-AV__seed0",
        "setting=H100-S3__method=CosFace__seed7",
        "setting=H100-S3__method=LEAP-AV__seed7",
        "setting=H100-S5__method=CosFace__seed7",
        "setting=H100-S5__method=LEAP-AV__seed7",
    ]
    last = cells[-1]
    assert last.labels == (("setting", "<H100,S5>"), ("method", "LEAP-AV"))
    assert last.spec.dataset.long_tail.tail_samples == 5
    assert last.spec.method.leap.threshold == 10
    assert method_label(last.spec) == "LEAP-AV"
    assert long_tail_label(last.spec) == "<H100,S5>"
    # The seed sets both the training seed and the long-tail cut's seed.
    assert (last.spec.train.seed, last.spec.dataset.long_tail.seed) == (7, 7)
    assert cells[0].spec.method.head.kind == "cosface"
    assert cells[0].spec.method.leap.mode == "off"


def test_set_then_axes_then_command_line_overrides(tmp_path: Path) -> None:
    sweep = parse_sweep(
        sweep_mapping(
            set={"train.epochs": 30, "model.width": 8}, seeds=[1], seed_fields=["train.seed"]
        )
    )
    cells = expand(sweep, tmp_path, {"train.epochs": 5})
    assert {cell.spec.train.epochs for cell in cells} == {5}
    assert {cell.spec.model.width for cell in cells} == {8}
    assert {(cell.spec.train.seed, cell.spec.dataset.long_tail.seed) for cell in cells} == {(1, 0)}


def test_base_file_is_read_relative_to_the_sweep_file(tmp_path: Path) -> None:
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "base.yaml").write_text(yaml.safe_dump(BASE))
    (tmp_path / "sweeps").mkdir()
    path = tmp_path / "sweeps" / "s.yaml"
    path.write_text(yaml.safe_dump(sweep_mapping(base="../specs/base.yaml")))
    sweep, folder = load_sweep(path)
    cells = expand(sweep, folder)
    assert len(cells) == 8
    assert cells[0].spec.train.epochs == 10


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"axes": {"method": {"LEAP-CV": {"method.leap.mode": "vanilla"}}}},
            "axes.method.LEAP-CV seed 0: method.leap: threshold is required when mode is 'vanilla'",
        ),
        (
            {"axes": {"method": {"X": {"train.epochz": 3}}}},
            "axes.method.X seed 0: train.epochz: Extra inputs are not permitted (got 3)",
        ),
        (
            {"axes": {"method": {"X": {"train.optimizer.lr": -1}}}},
            "axes.method.X seed 0: train.optimizer.lr: Input should be greater than 0 (got -1)",
        ),
        (
            {"axes": {"method": {"X": {"train.epochs.value": 3}}}},
            "axes.method.X: train.epochs.value: epochs is not a section (got 10)",
        ),
        (
            {"method_axis": "methods"},
            "method_axis: no axis named 'methods' (axes: ['setting', 'method'])",
        ),
        ({"base": "missing.yaml"}, "base: missing.yaml: No such file or directory"),
    ],
)
def test_bad_cells_fail_before_anything_runs_naming_the_field(
    tmp_path: Path, fields, message
) -> None:
    with pytest.raises(SweepError) as caught:
        expand(parse_sweep(sweep_mapping(**fields)), tmp_path)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"seeds": [0, 0]}, "seeds: must be distinct integers from 0 to 2147483647 (got [0, 0])"),
        (
            {"seeds": [0, 2**31]},
            "seeds: must be distinct integers from 0 to 2147483647 (got [0, 2147483648])",
        ),
        ({"axes": {}}, "axes: needs at least one axis"),
        ({"axes": {"method": {}}}, "axes: axis 'method' has no values"),
        ({"sedes": [1]}, "sedes: Extra inputs are not permitted (got [1])"),
        ({"name": "a b"}, "name: String should match pattern '^[A-Za-z0-9_.\\-]+$' (got 'a b')"),
        (
            {"validation": {"identities": 1}},
            "validation.identities: Input should be greater than or equal to 2 (got 1)",
        ),
    ],
)
def test_bad_sweep_files_give_one_line_naming_the_field(fields, message) -> None:
    with pytest.raises(SweepError) as caught:
        parse_sweep(sweep_mapping(**fields))
    assert str(caught.value) == message
    assert "\n" not in str(caught.value)


def test_unreadable_sweep_files(tmp_path: Path) -> None:
    with pytest.raises(SweepError, match=r"^sweep file .*nope.yaml: No such file"):
        load_sweep(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SweepError, match=r"^sweep file .*bad.yaml: not valid YAML"):
        load_sweep(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n")
    with pytest.raises(SweepError, match=r"^sweep: must be a mapping, got list$"):
        load_sweep(listed)
