"""Which long-tail method to use for open-set retrieval, on each shape of Omniglot-LT.

Reads the finished cells of ``benchmarks/omniglot_lt_long_tail_methods.yaml`` and prints,
as Markdown and per setting, the rules fixed before the grid ran, one row per method (mean
± std over seeds), every paired comparison with its 95 % Student-t interval (each method
against CosFace and against LEAP-CF) and the recommendation the rules give:

    python benchmarks/long_tail_methods_report.py .leap/sweeps/omniglot-lt-long-tail-methods \
        [--setting "<H20,S3>"]   # only these settings (repeatable)

The rules, fixed before the grid ran:

1. A setting's comparisons count only if CosFace reaches >= 95 % accuracy on its tail
   classes' training images for every seed.
2. A method helps on a setting if its paired mAP difference against CosFace has a 95 %
   Student-t interval above 0; it beats LEAP-CF if the same holds against LEAP-CF.
3. The recommendation for a setting is the method with the highest mean mAP among those
   that help; if none helps, it is CosFace. Where the best two's paired interval reaches 0,
   both are named.
4. Every comparison made is listed; the intervals are not corrected for multiple
   comparisons.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cloud_controls_report import COLUMNS as CLOUD_COLUMNS
from cloud_controls_report import Arms, arm_table, comparison_table, mean_metric, validity

from leap_core.sweeps.paired import interval_text, paired_difference
from leap_core.sweeps.results import per_seed, read_result

BASELINE, LEAP = "CosFace", "LEAP-CF"
RULES = __doc__.split("The rules, fixed before the grid ran:\n\n")[1].strip()
#: The feature-cloud grids' per-arm columns without the cloud's own: most methods here have
#: no cloud.
COLUMNS = tuple(column for column in CLOUD_COLUMNS if not column[0].startswith("cloud_"))


def by_setting(folder: Path) -> dict[str, Arms]:
    """The finished cells as setting → method → seed → result, in the order they ran."""
    settings: dict[str, Arms] = {}
    for path in sorted((folder / "cells").glob("*.json")):
        result = read_result(path)
        setting = result.labels.get("setting", "")
        arm = result.labels.get("method", result.method)
        settings.setdefault(setting, {}).setdefault(arm, {})[result.seed] = result
    return {setting: ordered(arms) for setting, arms in settings.items()}


def ordered(arms: Arms) -> Arms:
    """CosFace, then LEAP-CF, then the other methods by name."""
    first = (BASELINE, LEAP)

    def rank(name: str) -> tuple[int, str]:
        return (first.index(name) if name in first else len(first), name)

    return {name: arms[name] for name in sorted(arms, key=rank)}


def helps(arms: Arms, name: str, reference: str) -> bool:
    """Rule 2: ``name``'s paired ΔmAP against ``reference`` has an interval above 0."""
    if name not in arms or reference not in arms:
        return False
    difference = paired_difference(per_seed(arms[name], "mAP"), per_seed(arms[reference], "mAP"))
    return difference.above_zero


def recommendation(arms: Arms) -> str:
    """Rule 3, as a sentence."""
    helping = [name for name in arms if name != BASELINE and helps(arms, name, BASELINE)]
    if not helping:
        return f"no method helps: use **{BASELINE}**"
    ranked = sorted(helping, key=lambda name: mean_metric(arms[name], "mAP"), reverse=True)
    best = ranked[0]
    if len(ranked) > 1:
        second = ranked[1]
        difference = paired_difference(per_seed(arms[best], "mAP"), per_seed(arms[second], "mAP"))
        if not difference.above_zero:
            return (
                f"**{best}** or **{second}** (they differ by {interval_text(difference)} mAP "
                "points, an interval that reaches 0)"
            )
    return f"**{best}**"


def setting_report(setting: str, arms: Arms) -> list[str]:
    valid, validity_line = validity(arms)
    others = [name for name in arms if name != BASELINE]
    pairs = [(name, BASELINE) for name in others]
    pairs += [(name, LEAP) for name in others if name != LEAP]
    lines = [f"## {setting}", "", validity_line, ""]
    lines += arm_table(arms, COLUMNS)
    lines += ["", "Paired differences, mean [95 % t-interval] over seeds:", ""]
    lines += comparison_table(arms, pairs)
    beats = [name for name in others if name != LEAP and helps(arms, name, LEAP)]
    lines += [
        "",
        f"Rule 3 on {setting}: {recommendation(arms)}; "
        f"beating {LEAP} (rule 2): {', '.join(beats) if beats else 'none'}.",
    ]
    if not valid:
        lines += ["", "The baseline did not converge on its tail: the comparisons do not count."]
    return lines


def report(settings: dict[str, Arms]) -> str:
    lines = ["Rules (fixed before the grid ran):", "", RULES, ""]
    for setting, arms in settings.items():
        lines += [*setting_report(setting, arms), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="the sweep's output folder")
    parser.add_argument("--setting", action="append", help="report only this setting (repeatable)")
    args = parser.parse_args(argv)
    settings = by_setting(args.folder)
    if not settings:
        raise SystemExit(f"{args.folder}: no finished cells under cells/")
    if args.setting:
        unknown = sorted(set(args.setting) - set(settings))
        if unknown:
            raise SystemExit(
                f"--setting {', '.join(unknown)}: no finished cells; the folder has "
                f"{', '.join(settings)}"
            )
        settings = {name: arms for name, arms in settings.items() if name in args.setting}
    sys.stdout.write(report(settings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
