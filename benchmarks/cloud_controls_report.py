"""What the feature cloud adds over matched controls: the noise-level curve and the varying tail.

Reads the finished cells of the two grids and prints, as Markdown, the rules fixed before
they ran, one row per arm (mean ± std over seeds) and every paired comparison with its 95 %
Student-t interval (uncorrected for the number of comparisons):

    python benchmarks/cloud_controls_report.py levels .leap/sweeps/omniglot-lt-noise-curve
    python benchmarks/cloud_controls_report.py noise-curve .leap/sweeps/omniglot-lt-noise-curve \\
        --plot docs/results/omniglot_lt_noise_curve.png
    python benchmarks/cloud_controls_report.py varying-tail .leap/sweeps/omniglot-lt-varying-tail

``levels`` prints LEAP-CF's ``cloud_std_all_epochs`` (the mean offset std over every epoch
with the cloud on) per seed and its mean: the unit of the constant control's levels.

The rules, fixed before either grid ran:

1. A grid is valid only if CosFace reaches >= 95 % accuracy on its tail classes' training
   images (test transform, nearest class weight) for every seed.
2. Noise curve (``<H20,S3>``): the matched constant control (offsets of one fixed std on
   exactly the classes LEAP-CF would cloud at that step) runs at 0.5, 1, 2 and 3 times
   LEAP-CF's mean std. Its best level is the one with the highest mean mAP, chosen on the
   test identities (which favours the control). LEAP-CF picks a good noise level without
   tuning if its paired ΔmAP against the best level has an interval that reaches 0 or is
   above it; it beats tuned noise only if that interval is above 0.
3. Varying tail (exponential, class sizes 2-20): per-class statistics matter only if
   LEAP-CF beats the shuffled control **and** the matched constant control at the best
   level of rule 2, each with a paired ΔmAP interval above 0.
4. Six paired seeds (a seed fixes the cut and the initialisation); every comparison made is
   listed; the intervals are not corrected for multiple comparisons.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

from leap_core.sweeps.paired import interval_text, paired_difference
from leap_core.sweeps.results import CellResult, per_seed, results_by_arm
from leap_core.sweeps.table import Spread

VALID_TAIL_ACCURACY = 0.95
LEAP = "LEAP-CF"
PAPER = "LEAP-CF/paper"
SHUFFLED = "LEAP-CF-shuffled"
#: A matched constant arm is named by its level, e.g. "noise 2x" (2 × LEAP-CF's std).
LEVEL = re.compile(r"^noise ([0-9.]+)x$")

RULES = __doc__.split("The rules, fixed before either grid ran:\n\n")[1].strip()

Arms = dict[str, dict[int, CellResult]]

#: (metric key, header, scale, decimals) of the per-arm table of both grids.
COLUMNS: tuple[tuple[str, str, float, int], ...] = (
    ("mAP", "mAP", 100, 2),
    ("rank1", "Rank-1", 100, 1),
    ("final_train_accuracy_tail", "tail train acc", 100, 1),
    ("final_unseen_accuracy_tail", "tail unseen acc", 100, 1),
    ("final_unseen_map_tail", "tail unseen mAP", 100, 1),
    ("cloud_fraction_all_epochs", "cloud share", 100, 0),
    ("cloud_std_all_epochs", "cloud std (rad)", 1, 3),
    ("train_loss", "train loss", 1, 2),
)
#: The varying tail's K_i bins (eval.class_size_bins [1, 3, 6, 10]; no class has one image).
BINS = ("K2-3", "K4-6", "K7-10")


def level(name: str) -> float | None:
    match = LEVEL.match(name)
    return float(match.group(1)) if match else None


def order(arms: Arms) -> Arms:
    def rank(name: str) -> tuple[int, float, str]:
        fixed = ("CosFace", LEAP, PAPER, SHUFFLED)
        if name in fixed:
            return (fixed.index(name), 0.0, name)
        factor = level(name)
        return (len(fixed), factor if factor is not None else math.inf, name)

    return {name: arms[name] for name in sorted(arms, key=rank)}


def validity(arms: Arms) -> tuple[bool, str]:
    accuracy = per_seed(arms.get("CosFace", {}), "final_train_accuracy_tail")
    valid = bool(accuracy) and all(v >= VALID_TAIL_ACCURACY for v in accuracy.values())
    shown = ", ".join(f"seed {s}: {v:.1%}" for s, v in sorted(accuracy.items())) or "not run"
    verdict = "VALID" if valid else "NOT VALID"
    return valid, f"Validity (rule 1): CosFace tail training accuracy {shown} → **{verdict}**."


def arm_table(arms: Arms, columns: tuple[tuple[str, str, float, int], ...]) -> list[str]:
    header = ["arm", "seeds", *(column[1] for column in columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, arm in arms.items():
        cells = [name, ",".join(str(s) for s in sorted(arm))]
        for key, _, scale, decimals in columns:
            cells.append(Spread.of(list(per_seed(arm, key).values())).text(scale, decimals))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def comparison_table(
    arms: Arms, pairs: list[tuple[str, str]], key: str = "mAP", label: str = "ΔmAP"
) -> list[str]:
    """One row per comparison: the paired difference of ``key`` (and of Rank-1, for the
    retrieval mAP) with its interval."""
    rank = key == "mAP"
    lines = [
        f"| arm | vs | seeds | {label} (points) |{' ΔRank-1 |' if rank else ''} interval above 0 |",
        "|---|---|---|---|" + ("---|" if rank else "") + "---|",
    ]
    for name, reference in pairs:
        if name not in arms or reference not in arms:
            continue
        difference = paired_difference(per_seed(arms[name], key), per_seed(arms[reference], key))
        cells = [name, reference, str(difference.n), interval_text(difference)]
        if rank:
            rank1 = paired_difference(
                per_seed(arms[name], "rank1"), per_seed(arms[reference], "rank1")
            )
            cells.append(interval_text(rank1))
        cells.append("yes" if difference.above_zero else "no")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def mean_metric(arm: dict[int, CellResult], key: str) -> float:
    return Spread.of(list(per_seed(arm, key).values())).mean


def best_level(arms: Arms) -> str | None:
    """The matched constant arm with the highest mean mAP."""
    levels = [name for name in arms if level(name) is not None]
    return max(levels, key=lambda name: mean_metric(arms[name], "mAP"), default=None)


def levels_report(arms: Arms) -> str:
    stds = per_seed(arms.get(LEAP, {}), "cloud_std_all_epochs")
    if not stds:
        raise SystemExit(f"no finished {LEAP} cell reports cloud_std_all_epochs")
    mean = Spread.of(list(stds.values())).mean
    shown = ", ".join(f"seed {s}: {v:.4f}" for s, v in sorted(stds.items()))
    lines = [
        f"{LEAP} cloud_std_all_epochs: {shown}; mean {mean:.4f} rad over {len(stds)} seeds",
        "",
        *(f"noise {f:g}x: constant_std {f * mean:.4f}" for f in (0.5, 1, 2, 3)),
    ]
    return "\n".join(lines) + "\n"


def noise_curve_report(arms: Arms, plot: Path | None) -> str:
    valid, validity_line = validity(arms)
    best = best_level(arms)
    lines = ["Rules (fixed before the grid ran):", "", RULES, "", validity_line, ""]
    lines += arm_table(arms, COLUMNS)
    pairs = [(LEAP, "CosFace"), (PAPER, "CosFace"), (LEAP, PAPER)]
    pairs += [(name, "CosFace") for name in arms if level(name) is not None]
    pairs += [(LEAP, name) for name in arms if level(name) is not None]
    pairs += [(PAPER, best)] if best else []
    lines += ["", "Paired differences, mean [95 % t-interval] over seeds:", ""]
    lines += comparison_table(arms, pairs)
    if best is not None and LEAP in arms:
        difference = paired_difference(per_seed(arms[LEAP], "mAP"), per_seed(arms[best], "mAP"))
        good = difference.n >= 2 and difference.high >= 0
        lines += [
            "",
            f"Best constant level (rule 2): **{best}** "
            f"({mean_metric(arms[best], 'mAP') * 100:.2f} mAP). {LEAP} against it: "
            f"{interval_text(difference)} → {LEAP} "
            + (
                "beats tuned noise."
                if difference.above_zero
                else "picks a level as good as the best tuned one."
                if good
                else "is worse than the best tuned level."
            ),
        ]
    if plot is not None:
        draw_curve(arms, plot)
        lines += ["", f"Plot: {plot}"]
    if not valid:
        lines += ["", "The baseline did not converge on its tail: the comparisons do not count."]
    return "\n".join(lines) + "\n"


def draw_curve(arms: Arms, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    levels = [name for name in arms if level(name) is not None]
    xs = [mean_metric(arms[name], "cloud_std_all_epochs") for name in levels]
    ys = [Spread.of(list(per_seed(arms[name], "mAP").values())) for name in levels]
    axis.errorbar(
        xs,
        [y.mean * 100 for y in ys],
        yerr=[y.std * 100 for y in ys],
        marker="o",
        label="matched constant noise",
        capsize=3,
    )
    for name, marker in ((LEAP, "s"), (PAPER, "^")):
        if name in arms:
            spread = Spread.of(list(per_seed(arms[name], "mAP").values()))
            axis.errorbar(
                [mean_metric(arms[name], "cloud_std_all_epochs")],
                [spread.mean * 100],
                yerr=[spread.std * 100],
                marker=marker,
                linestyle="none",
                label=name,
                capsize=3,
            )
    if "CosFace" in arms:
        axis.axhline(
            mean_metric(arms["CosFace"], "mAP") * 100,
            color="grey",
            linestyle="--",
            label="CosFace (no noise)",
        )
    axis.set_xlabel("mean offset std over the cloud epochs (rad)")
    axis.set_ylabel("mAP (%)")
    axis.set_title(
        "Omniglot-LT <H20,S3>: mAP against the noise level\n(mean ± std over the seeds)",
        fontsize=10,
    )
    axis.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def varying_tail_report(arms: Arms) -> str:
    valid, validity_line = validity(arms)
    lines = ["Rules (fixed before the grid ran):", "", RULES, "", validity_line, ""]
    lines += arm_table(arms, COLUMNS)
    bin_columns = tuple(
        (f"final_unseen_{what}_{name}", f"{name} unseen {label}", 100, 1)
        for name in BINS
        for what, label in (("accuracy", "acc"), ("map", "mAP"))
    )
    lines += ["", "Unseen drawings of the tail classes by K_i (percent):", ""]
    lines += arm_table(arms, bin_columns)
    first = next(iter(arms.values()))
    seed = min(first)
    counts = [(n, first[seed].metrics.get(f"final_unseen_images_{n}")) for n in BINS]
    shown = ", ".join(f"{name} {int(count)}" for name, count in counts if count is not None)
    if shown:
        lines += ["", f"Unseen images per bin (seed {seed}; the same cut in every arm): {shown}"]
    controls = [name for name in arms if name == SHUFFLED or level(name) is not None]
    pairs = [(LEAP, "CosFace"), (PAPER, "CosFace"), (LEAP, PAPER)]
    pairs += [(name, "CosFace") for name in controls] + [(LEAP, name) for name in controls]
    lines += ["", "Paired differences, mean [95 % t-interval] over seeds:", ""]
    lines += comparison_table(arms, pairs)
    for name in BINS:
        lines += ["", f"Unseen-image mAP of {name} tail classes:", ""]
        lines += comparison_table(arms, pairs, f"final_unseen_map_{name}", "Δ unseen mAP")
    above = {
        name: paired_difference(per_seed(arms[LEAP], "mAP"), per_seed(arms[name], "mAP")).above_zero
        for name in controls
        if LEAP in arms
    }
    levels = [name for name in controls if level(name) is not None]
    if LEAP in arms and SHUFFLED in above and levels:
        matters = above[SHUFFLED] and all(above[name] for name in levels)
        lines += [
            "",
            f"Rule 3: {LEAP} vs {SHUFFLED} above 0: {'yes' if above[SHUFFLED] else 'no'}; "
            + "; ".join(f"vs {n} above 0: {'yes' if above[n] else 'no'}" for n in levels)
            + f" → per-class statistics **{'matter' if matters else 'do not pass the rule'}**.",
        ]
    if not valid:
        lines += ["", "The baseline did not converge on its tail: the comparisons do not count."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("levels", "noise-curve", "varying-tail"))
    parser.add_argument("folder", type=Path, help="the sweep's output folder")
    parser.add_argument("--plot", type=Path, help="noise-curve: write the mAP-against-std plot")
    args = parser.parse_args(argv)
    arms = order(results_by_arm(args.folder))
    if not arms:
        raise SystemExit(f"{args.folder}: no finished cells under cells/")
    if args.what == "levels":
        sys.stdout.write(levels_report(arms))
    elif args.what == "noise-curve":
        sys.stdout.write(noise_curve_report(arms, args.plot))
    else:
        sys.stdout.write(varying_tail_report(arms))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
