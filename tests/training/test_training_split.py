"""One head/tail definition per run, used by the cloud, the diagnostics, plots and params."""

from __future__ import annotations

import numpy as np
import pytest

from leap_core.config import parse_spec
from leap_core.data import Record, full_training_set, reid_long_tail
from leap_core.leap import FeatureCloud
from leap_core.training.split import head_tail_split
from leap_core.training.trainer import Trainer


def records(counts: dict[int, int]) -> list[Record]:
    return [
        Record(f"/data/{pid}_{i}.jpg", pid, i % 2)
        for pid, count in counts.items()
        for i in range(count)
    ]


COUNTS = {1: 9, 2: 2, 3: 5, 4: 1, 5: 7}  # sorted by pid: labels 0..4


def folder_spec(**leap) -> object:
    return parse_spec(
        {
            "dataset": {"format": "folders", "root": "/data"},
            "method": {"leap": {"cloud_start_epoch": 1, **leap}},
            "train": {"epochs": 2},
        }
    )


def test_without_a_cut_or_threshold_the_median_count_splits():
    manifest = full_training_set(records(COUNTS))
    assert all(manifest.head)  # the full set marks every class head ...
    split = head_tail_split(folder_spec(), manifest)
    # ... but the run's split is K_i > median(9, 2, 5, 1, 7) = 5: pids 1 and 5.
    assert split.rule == "median" and split.threshold == 5.0
    assert split.head.tolist() == [True, False, False, False, True]
    assert split.params() == {
        "split.rule": "median",
        "split.threshold": "5",
        "split.head_classes": "2",
        "split.tail_classes": "3",
    }


def test_a_threshold_is_the_split_whatever_the_cut_says():
    manifest = reid_long_tail(records(COUNTS), head=1, tail_samples=4)
    assert manifest.head == (True, False, False, False, False)
    split = head_tail_split(folder_spec(mode="vanilla", threshold=3), manifest)
    # Counts after the cut: 9, 2, 4, 1, 4 → K_i > 3 is head.
    assert manifest.class_counts == (9, 2, 4, 1, 4)
    assert split.rule == "threshold"
    assert split.head.tolist() == [True, False, True, False, True]


def test_a_cut_without_threshold_keeps_the_cuts_head():
    manifest = reid_long_tail(records(COUNTS), head=2, tail_samples=2)
    spec = parse_spec(
        {
            "dataset": {
                "format": "folders",
                "root": "/data",
                "long_tail": {"kind": "reid", "head": 2, "tail_samples": 2},
            },
            "train": {"epochs": 2},
        }
    )
    split = head_tail_split(spec, manifest)
    assert split.rule == "cut" and split.threshold is None
    assert split.head.tolist() == list(manifest.head)
    assert split.head_classes == 2


def test_the_trainer_uses_one_split_for_cloud_diagnostics_and_results(tiny_spec, tmp_path):
    # The tiny set is generated cut <H4,S3> (head identities have 16-24 images); T = 3.
    spec = tiny_spec(
        method={
            "head": {"kind": "cosface"},
            "leap": {"mode": "vanilla", "threshold": 3, "cloud_start_epoch": 1},
        }
    )
    trainer = Trainer(spec, tmp_path)
    counts = np.asarray(trainer.data.manifest.class_counts)
    assert trainer.split.head.tolist() == (counts > 3).tolist()
    assert trainer.cloud is not None
    assert trainer.cloud.is_head.tolist() == trainer.split.head.tolist()
    metrics = trainer.fit()
    assert trainer.diagnostics is not None
    assert trainer.diagnostics.head.tolist() == trainer.split.head.tolist()
    assert metrics["final_head_classes"] == 4 and metrics["final_tail_classes"] == 20


@pytest.mark.parametrize("mode", ["vanilla", "constant"])
def test_a_split_without_head_classes_is_refused_naming_it(mode):
    manifest = full_training_set(records({1: 3, 2: 3, 3: 3}))
    spec = folder_spec()
    split = head_tail_split(spec, manifest)
    assert split.head_classes == 0  # equal counts: nothing is above the median
    # The explicit split is the cloud's, whatever the threshold would give.
    settings = {"threshold": 1} if mode == "vanilla" else {"constant_std": 0.1}
    with pytest.raises(ValueError, match="head leaves no head class"):
        FeatureCloud(list(manifest.class_counts), 4, mode=mode, head=split.head, **settings)


def test_a_split_without_head_classes_stops_the_run_before_training(tiny_spec, tmp_path):
    spec = tiny_spec(
        method={
            "leap": {
                "mode": "constant",
                "constant_std": 0.1,
                "threshold": 100,
                "cloud_start_epoch": 1,
            }
        }
    )
    with pytest.raises(
        ValueError,
        match=r"method.leap.mode 'constant' needs head and tail "
        r"classes, but the run's split \(K_i > 100 "
        r"\(threshold\)\) leaves no head class",
    ):
        Trainer(spec, tmp_path)
