"""The converged, controlled Omniglot-LT table with its validity check and paired intervals.

Reads the finished cells of ``leap sweep benchmarks/omniglot_lt_converged.yaml`` and prints,
as Markdown, the rules fixed before the grid ran, one row per arm (mean ± std over seeds),
and the paired per-seed differences with 95 % Student-t intervals:

    python benchmarks/omniglot_lt_report.py .leap/sweeps/omniglot-lt-converged

The rules, fixed before running:

1. The experiment is valid only if CosFace reaches >= 95 % accuracy on its tail classes'
   training images (test transform, nearest class weight) for every seed: an underfit
   network cannot show the tail pathology LEAP treats.
2. A LEAP arm helps only if its paired ΔmAP against its baseline (CosFace, ArcFace) has a
   95 % t-interval above 0 **and** its paired ΔmAP against the constant-noise control of the
   same family (CosFace+noise, ArcFace+noise) does too.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from leap_core.sweeps.paired import interval_text, paired_difference
from leap_core.sweeps.results import CellResult, per_seed, results_by_arm
from leap_core.sweeps.table import Spread

VALID_TAIL_ACCURACY = 0.95
CONTROL = "CosFace+noise"
ARC_CONTROL = "ArcFace+noise"
#: a LEAP arm's family (the letter after "LEAP-") → its baseline and its control.
FAMILIES: dict[str, tuple[str, str]] = {"C": ("CosFace", CONTROL), "A": ("ArcFace", ARC_CONTROL)}


def comparisons(arms: list[str]) -> dict[str, tuple[str, ...]]:
    """Each LEAP arm against its family's baseline and control (paired by seed), and each
    control against its baseline."""
    result: dict[str, tuple[str, ...]] = {}
    for name in arms:
        if name.startswith("LEAP-") and name[5:6] in FAMILIES:
            result[name] = FAMILIES[name[5:6]]
    for baseline, control in FAMILIES.values():
        if control in arms:
            result[control] = (baseline,)
    return result


#: (metric key, header, scale, decimals) of the per-arm table.
COLUMNS: tuple[tuple[str, str, float, int], ...] = (
    ("mAP", "mAP", 100, 1),
    ("rank1", "Rank-1", 100, 1),
    ("final_train_accuracy_tail", "tail train acc", 100, 1),
    ("final_unseen_accuracy_tail", "tail unseen acc", 100, 1),
    ("final_head_angle_variance", "head var", 1, 4),
    ("final_tail_angle_variance", "tail var", 1, 4),
    ("train_cloud_fraction", "cloud share", 100, 0),
    ("train_cloud_std_mean", "cloud std (rad)", 1, 3),
    ("train_loss", "train loss", 1, 2),
)


#: Table order: baselines, their LEAP arms and controls; any other arm after, by name.
ORDER = ("CosFace", "LEAP-CV", "LEAP-CF", CONTROL, "ArcFace", "LEAP-AV", "LEAP-AF", ARC_CONTROL)


def load(folder: Path) -> dict[str, dict[int, CellResult]]:
    """arm label → seed → result, in table order."""
    return results_by_arm(folder, ORDER)


metric = per_seed
interval = interval_text


def report(folder: Path) -> str:
    arms = load(folder)
    if not arms:
        raise SystemExit(f"{folder}: no finished cells under cells/")
    lines = [
        "Rules (fixed before the grid ran):",
        "",
        f"1. valid only if CosFace reaches >= {VALID_TAIL_ACCURACY:.0%} on its tail "
        f"classes' training images for every seed;",
        "2. a LEAP arm helps only if its paired ΔmAP has a 95 % t-interval above 0 "
        f"against its baseline and against the constant-noise control of its family "
        f"({CONTROL}, {ARC_CONTROL}).",
        "",
    ]
    baseline = arms.get("CosFace", {})
    tail_accuracy = metric(baseline, "final_train_accuracy_tail")
    valid = bool(tail_accuracy) and all(v >= VALID_TAIL_ACCURACY for v in tail_accuracy.values())
    shown = ", ".join(f"seed {s}: {v:.1%}" for s, v in sorted(tail_accuracy.items()))
    lines += [
        f"Validity: CosFace tail training accuracy {shown or 'not run'} → "
        f"{'VALID' if valid else 'NOT VALID'}.",
        "",
    ]

    header = ["arm", "seeds", *(column[1] for column in COLUMNS)]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, arm in arms.items():
        cells = [name, ",".join(str(s) for s in sorted(arm))]
        for key, _, scale, decimals in COLUMNS:
            cells.append(Spread.of(list(metric(arm, key).values())).text(scale, decimals))
        lines.append("| " + " | ".join(cells) + " |")

    lines += [
        "",
        "Paired differences (percentage points, mean [95 % t-interval] over seeds):",
        "",
        "| arm | vs | seeds | ΔmAP | ΔRank-1 | ΔmAP interval above 0 |",
        "|---|---|---|---|---|---|",
    ]
    verdicts = []
    for name, references in comparisons(list(arms)).items():
        if name not in arms:
            continue
        above = []
        missing = [reference for reference in references if reference not in arms]
        for reference in references:
            if reference not in arms:
                continue
            d_map = paired_difference(metric(arms[name], "mAP"), metric(arms[reference], "mAP"))
            d_rank = paired_difference(
                metric(arms[name], "rank1"), metric(arms[reference], "rank1")
            )
            above.append(d_map.above_zero)
            lines.append(
                f"| {name} | {reference} | {d_map.n} | {interval(d_map)} | "
                f"{interval(d_rank)} | {'yes' if d_map.above_zero else 'no'} |"
            )
        if name.startswith("LEAP") and above:
            helps = not missing and all(above)
            absent = f" (no {', '.join(missing)} arm in this grid)" if missing else ""
            verdicts.append(f"- {name}: {'helps' if helps else 'does not pass the rule'}{absent}")
    lines += ["", "Verdicts by rule 2:", "", *verdicts]
    if not valid:
        lines += [
            "",
            "The baseline did not converge on its tail: the verdicts above do not count (rule 1).",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="the sweep's output folder")
    args = parser.parse_args(argv)
    sys.stdout.write(report(args.folder))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
