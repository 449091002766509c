"""The results table: mean ± std over seeds and paired deltas against the matching baseline,
checked against values worked out by hand."""

from __future__ import annotations

import csv
import io
import math

import pytest

from leap_core.sweeps.results import CellResult
from leap_core.sweeps.sweepfile import PAPER_BASELINES
from leap_core.sweeps.table import Spread, build_rows, to_csv, to_markdown
from tests.sweeps.cells import finished_cell


def result(
    setting: str,
    method: str,
    seed: int,
    mAP: float,
    rank1: float,
    head_var: float = 0.04,
    tail_var: float = 0.02,
) -> CellResult:
    metrics = {
        "mAP": mAP,
        "rank1": rank1,
        "final_head_angle_variance": head_var,
        "final_tail_angle_variance": tail_var,
    }
    return finished_cell({"setting": setting, "method": method}, seed, metrics)


RESULTS = [
    result("<H100,S3>", "CosFace", 0, 0.40, 0.60, tail_var=0.020),
    result("<H100,S3>", "CosFace", 1, 0.44, 0.64, tail_var=0.030),
    result("<H100,S3>", "LEAP-CF", 0, 0.45, 0.66),
    result("<H100,S3>", "LEAP-CF", 1, 0.47, 0.65),
    result("<H100,S3>", "ArcFace", 0, 0.50, 0.70),
    result("<H100,S3>", "ArcFace", 1, 0.52, 0.71),
    result("<H100,S3>", "LEAP-AF", 0, 0.49, 0.72),  # one seed only
    result("<H100,S5>", "LEAP-CV", 0, 0.30, 0.50),  # no CosFace in this setting
]


def test_spread_is_mean_and_sample_std() -> None:
    spread = Spread.of([0.40, 0.44])
    assert spread.mean == pytest.approx(0.42)
    assert spread.std == pytest.approx(math.sqrt(0.02**2 + 0.02**2))  # n - 1 = 1
    assert spread.n == 2
    single = Spread.of([0.5])
    assert (single.mean, single.n) == (0.5, 1) and math.isnan(single.std)
    assert Spread.of([math.nan]).n == 0


def test_rows_group_seeds_and_pair_deltas_with_the_baseline() -> None:
    rows = build_rows(RESULTS, "method", PAPER_BASELINES)
    assert [(dict(r.setting)["setting"], r.method) for r in rows] == [
        ("<H100,S3>", "CosFace"),
        ("<H100,S3>", "LEAP-CF"),
        ("<H100,S3>", "ArcFace"),
        ("<H100,S3>", "LEAP-AF"),
        ("<H100,S5>", "LEAP-CV"),
    ]
    cosface, leap_cf, arcface, leap_af, leap_cv = rows
    assert cosface.stats["mAP"].mean == pytest.approx(0.42)
    assert cosface.stats["final_tail_angle_variance"].mean == pytest.approx(0.025)
    assert cosface.baseline is None and cosface.delta == {}
    # LEAP-CF - CosFace per seed: mAP +0.05, +0.03; rank-1 +0.06, +0.01.
    assert leap_cf.baseline == "CosFace"
    assert leap_cf.delta["mAP"].mean == pytest.approx(0.04)
    assert leap_cf.delta["mAP"].std == pytest.approx(math.sqrt(2) * 0.01)
    assert leap_cf.delta["rank1"].mean == pytest.approx(0.035)
    assert leap_cf.delta["rank1"].std == pytest.approx(math.sqrt(2) * 0.025)
    # LEAP-AF ran seed 0 only: paired with ArcFace seed 0 alone.
    assert leap_af.baseline == "ArcFace"
    assert leap_af.delta["mAP"].mean == pytest.approx(-0.01)
    assert leap_af.delta["mAP"].n == 1
    assert arcface.baseline is None
    assert leap_cv.baseline is None and leap_cv.delta == {}


def test_markdown_in_the_papers_format() -> None:
    lines = to_markdown(build_rows(RESULTS, "method", PAPER_BASELINES)).splitlines()
    assert lines[0] == (
        "| setting | method | seeds | mAP | Rank-1 | ΔmAP | ΔRank-1 | vs | head var | tail var |"
    )
    assert lines[2] == (
        "| \\<H100,S3> | CosFace | 2 | 42.0 ± 2.8 | 62.0 ± 2.8 | – | – | – | "
        "0.0400 ± 0.0000 | 0.0250 ± 0.0071 |"
    )
    assert lines[3] == (
        "| \\<H100,S3> | LEAP-CF | 2 | 46.0 ± 1.4 | 65.5 ± 0.7 | +4.0 ± 1.4 | "
        "+3.5 ± 3.5 | CosFace | 0.0400 ± 0.0000 | 0.0200 ± 0.0000 |"
    )
    assert lines[5] == (
        "| \\<H100,S3> | LEAP-AF | 1 | 49.0 | 72.0 | -1.0 | +2.0 | ArcFace | 0.0400 | 0.0200 |"
    )
    assert lines[6] == "| \\<H100,S5> | LEAP-CV | 1 | 30.0 | 50.0 | – | – | – | 0.0400 | 0.0200 |"


def test_csv_holds_fractions_and_empty_std_for_one_seed() -> None:
    lines = list(csv.reader(io.StringIO(to_csv(build_rows(RESULTS, "method", PAPER_BASELINES)))))
    assert lines[0] == [
        "setting",
        "method",
        "paper_method",
        "seeds",
        "mAP_mean",
        "mAP_std",
        "rank1_mean",
        "rank1_std",
        "final_head_angle_variance_mean",
        "final_head_angle_variance_std",
        "final_tail_angle_variance_mean",
        "final_tail_angle_variance_std",
        "delta_mAP_mean",
        "delta_mAP_std",
        "delta_rank1_mean",
        "delta_rank1_std",
        "baseline",
    ]
    leap_cf = lines[2]
    assert leap_cf[:4] == ["<H100,S3>", "LEAP-CF", "LEAP-CF", "0 1"]
    assert float(leap_cf[4]) == pytest.approx(0.46)
    assert float(leap_cf[12]) == pytest.approx(0.04)
    assert leap_cf[-1] == "CosFace"
    leap_af = lines[4]
    assert leap_af[5] == "" and float(leap_af[12]) == pytest.approx(-0.01)


def test_method_labels_of_the_axis_match_by_the_specs_method() -> None:
    # Axis labels are free (Fig. 5's "LEAP-CV start 10"); the baseline is found through the
    # spec's own method label, in the same setting.
    relabelled = [result("s", "CosFace", 0, 0.40, 0.60), result("s", "LEAP-CV", 0, 0.43, 0.61)]
    relabelled[1].labels["method"] = "LEAP-CV start 10"
    rows = build_rows(relabelled, "method", PAPER_BASELINES)
    assert rows[1].method == "LEAP-CV start 10"
    assert rows[1].baseline == "CosFace"
    assert rows[1].delta["mAP"].mean == pytest.approx(0.03)


def test_face_sweeps_tabulate_their_own_metric() -> None:
    face = [
        CellResult(
            cell=f"c{m}",
            labels={"setting": "<H5K,T10K>", "method": m},
            seed=0,
            method=m,
            split="test",
            spec={},
            metrics={"lfw_accuracy": acc},
            wall_s=1.0,
        )
        for m, acc in (("ArcFace", 0.990), ("LEAP-AF", 0.9932))
    ]
    rows = build_rows(face, "method", PAPER_BASELINES, ("lfw_accuracy",))
    lines = to_markdown(rows).splitlines()
    assert lines[0] == "| setting | method | seeds | LFW | ΔLFW | vs | head var | tail var |"
    assert lines[3] == "| \\<H5K,T10K> | LEAP-AF | 1 | 99.3 | +0.3 | ArcFace | – | – |"


def test_spread_text_shows_mean_and_std_scaled():
    from leap_core.sweeps.table import Spread

    assert Spread.of([0.1, 0.3]).text(100, 1) == "20.0 ± 14.1"  # std of (10, 30) is 14.14
    assert Spread.of([0.25, float("nan")]).text(100, 1) == "25.0"
    assert Spread.of([]).text() == "–"
