"""A checkpoint's per-class rows apart from the rest: slicing ragged angle memories by class,
joining ranges, and a single-file payload split and joined back unchanged."""

from __future__ import annotations

import itertools

import pytest
import torch
from typer.testing import CliRunner

from leap_cli import app
from leap_core.leap.cloud_state import slice_cloud_rows
from leap_core.training.checkpoint import save_checkpoint
from leap_core.training.checkpoint_rows import Rows, join_payload, split_payload
from leap_core.training.checkpoint_store import open_checkpoint

# Five classes of 1, 5, 2, 7 and 3 images; with P = 0.5 they keep ceil(K/2) angles:
# 1, 3, 1, 4 and 2 slots, at offsets 0, 1, 4, 5 and 9 of eleven.
COUNTS = torch.tensor([1, 5, 2, 7, 3])
P = 0.5
LAST_TWO_SLOTS = [5.0, 6.0, 7.0, 8.0, 9.0, 10.0]


def cloud_rows() -> dict[str, torch.Tensor]:
    return {
        "class_counts": COUNTS.clone(),
        "centres": torch.arange(10.0).reshape(5, 2),
        "seen": torch.tensor([True, False, True, True, False]),
        "memory.written": torch.tensor([1, 0, 4, 9, 0]),
        "memory.mean": torch.arange(5.0, dtype=torch.float64),
        "memory.variance": torch.arange(5.0, dtype=torch.float64) / 10,
        "memory.angles": torch.arange(11.0),
    }


def rows() -> Rows:
    return Rows(
        0,
        5,
        torch.arange(15.0).reshape(5, 3),
        {"exp_avg": torch.ones(5, 3), "exp_avg_sq": torch.full((5, 3), 2.0)},
        cloud_rows(),
    )


def test_a_class_range_takes_its_own_angle_slots():
    middle = slice_cloud_rows(cloud_rows(), 1, 3, P)
    assert middle["memory.angles"].tolist() == [1.0, 2.0, 3.0, 4.0]  # class 1: 3, class 2: 1
    assert middle["class_counts"].tolist() == [5, 2]
    last_two = slice_cloud_rows(cloud_rows(), 3, 5, P)["memory.angles"]
    assert last_two.tolist() == LAST_TWO_SLOTS  # class 3: 4 slots, class 4: 2


def test_ranges_of_any_split_join_back_to_the_whole():
    whole = rows()
    for cuts in ([0, 3, 5], [0, 1, 2, 4, 5], [0, 5]):  # uneven splits, as 2, 4 and 1 ranks
        parts = [whole.slice(a, b, P) for a, b in itertools.pairwise(cuts)]
        joined = Rows.concat(parts)
        assert (joined.start, joined.stop) == (0, 5)
        assert torch.equal(joined.head, whole.head)
        for name, value in whole.optimizer.items():
            assert torch.equal(joined.optimizer[name], value)
        assert joined.cloud is not None and whole.cloud is not None
        for name, value in whole.cloud.items():
            assert torch.equal(joined.cloud[name], value), name
    # A slice of a slice names classes by their absolute index.
    assert whole.slice(1, 5, P).slice(3, 4, P).head.tolist() == [[9.0, 10.0, 11.0]]


def test_a_gap_between_ranges_and_a_range_outside_are_refused():
    whole = rows()
    with pytest.raises(ValueError, match=r"classes 2\.\.3 are missing"):
        Rows.concat([whole.slice(0, 2, P), whole.slice(3, 5, P)])
    with pytest.raises(ValueError, match=r"classes 4\.\.6 are not inside 0\.\.5"):
        whole.slice(4, 6, P)


def payload() -> dict:
    return {
        "spec": {"name": "x"},
        "model": {"layer.weight": torch.ones(4)},
        "epoch": 3,
        "head": {"weight": torch.arange(15.0).reshape(5, 3)},
        "optimizer": {
            "state": {
                0: {"step": torch.tensor(7.0), "exp_avg": torch.zeros(4)},
                1: {
                    "step": torch.tensor(7.0),
                    "exp_avg": torch.ones(5, 3),
                    "exp_avg_sq": torch.full((5, 3), 2.0),
                },
            },
            "param_groups": [{"lr": 0.1, "params": [0, 1]}],
        },
        "cloud": {**cloud_rows(), "memory.angles": torch.arange(12.0), "_extra_state": {"seed": 1}},
        "rng": {"torch": torch.zeros(3)},
    }


def test_a_single_file_payload_splits_into_rows_and_joins_back_unchanged():
    original = payload()
    common, split = split_payload(original)
    assert common["head_parameter"] == 1  # the last parameter: where the trainer puts the head
    assert common["optimizer"]["state"][1].keys() == {"step"}
    assert common["optimizer"]["state"][0].keys() == {"step", "exp_avg"}  # the backbone's
    assert common["cloud"] == {"_extra_state": {"seed": 1}}
    assert split.optimizer.keys() == {"exp_avg", "exp_avg_sq"}
    assert split.cloud is not None and split.cloud["memory.angles"].tolist() == list(
        map(float, range(11))
    )  # without the spare slot
    joined = join_payload(common, split)
    assert joined.keys() == {*original.keys(), "head_parameter"}
    assert torch.equal(joined["head"]["weight"], original["head"]["weight"])
    state = joined["optimizer"]["state"]
    assert state[1].keys() == {"step", "exp_avg", "exp_avg_sq"}
    assert torch.equal(state[1]["exp_avg_sq"], original["optimizer"]["state"][1]["exp_avg_sq"])
    assert torch.equal(joined["cloud"]["memory.angles"][:-1], torch.arange(11.0))
    assert joined["cloud"]["memory.angles"].numel() == 12
    assert original["optimizer"]["state"][1].keys() == {"step", "exp_avg", "exp_avg_sq"}


def test_a_single_file_gives_the_rows_and_streams_a_rank_asks_for(tmp_path):
    saved = {**payload(), "distributed": {"world_size": 2, "rng": ["r0", "r1"]}}
    path = save_checkpoint(tmp_path / "last.pt", saved)
    checkpoint = open_checkpoint(tmp_path)  # the run folder finds its last.pt
    assert checkpoint.path == path and checkpoint.world_size == 2 and checkpoint.num_classes == 5
    upper = checkpoint.rows(3, 5, P)
    assert upper.head.tolist() == [[9.0, 10.0, 11.0], [12.0, 13.0, 14.0]]
    assert upper.cloud is not None
    assert upper.cloud["memory.angles"].tolist() == LAST_TWO_SLOTS
    assert checkpoint.rank_state(1) == {"rng": "r1", "cloud_generator": None}


def test_consolidating_what_is_not_a_checkpoint_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(app, ["checkpoint", "consolidate", str(tmp_path)])
    assert result.exit_code == 2
    assert f"error: {tmp_path} holds no complete checkpoint (last.pt, or last.shards" in " ".join(
        result.output.split()
    )


def test_one_file_of_a_sharded_checkpoint_is_refused_with_what_to_give(tmp_path):
    part = save_checkpoint(tmp_path / "common.pt", {"spec": {}, "model": {}})
    with pytest.raises(ValueError, match="is one file of a sharded checkpoint: give its folder"):
        open_checkpoint(part)
