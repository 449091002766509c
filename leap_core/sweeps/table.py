"""The results table in the paper's format: one row per setting × method, mAP and Rank-1 as
mean ± std over seeds, and the change against the matching baseline.

Conventions (stated in every rendered table):

- metrics in percent; ``std`` is the sample standard deviation over seeds (n − 1), empty
  for a single seed;
- Δ is paired by seed: for every seed both the method and its baseline ran, the method's
  value minus the baseline's; the table shows the mean ± std of those differences (the
  mean equals the difference of the means when both ran the same seeds). Pairing is what
  the seeds are for: the same seed gives both runs the same head classes and tail images;
- a row's baseline is the row of the same setting (every axis but the method axis) whose
  method, as the spec names it, is the baseline of this row's method (LEAP-CV/CF →
  CosFace, LEAP-AV/AF → ArcFace).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field

import numpy as np

from leap_core.sweeps.results import CellResult

#: Default metric columns (the re-ID tables); a sweep file may list others.
METRICS: tuple[str, ...] = ("mAP", "rank1")
#: Headers of metrics the paper reports; others are shown by their key.
HEADERS: dict[str, str] = {
    "mAP": "mAP",
    "rank1": "Rank-1",
    "rank5": "Rank-5",
    "rank10": "Rank-10",
    "mINP": "mINP",
    "lfw_accuracy": "LFW",
}
#: Angular-variance columns (rad², not percent).
VARIANCES: tuple[tuple[str, str], ...] = (
    ("final_head_angle_variance", "head var"),
    ("final_tail_angle_variance", "tail var"),
)


@dataclass(frozen=True)
class Spread:
    """Mean and sample standard deviation (NaN for fewer than two values)."""

    mean: float
    std: float
    n: int

    @staticmethod
    def of(values: list[float]) -> Spread:
        finite = [v for v in values if math.isfinite(v)]
        if not finite:
            return Spread(math.nan, math.nan, 0)
        array = np.asarray(finite, dtype=float)
        std = float(array.std(ddof=1)) if len(finite) > 1 else math.nan
        return Spread(float(array.mean()), std, len(finite))

    def text(self, scale: float = 1.0, decimals: int = 4) -> str:
        """``mean ± std`` times ``scale``; the mean alone for one value, ``–`` for none."""
        if self.n == 0:
            return "–"
        mean = f"{self.mean * scale:.{decimals}f}"
        return mean if self.n == 1 else f"{mean} ± {self.std * scale:.{decimals}f}"


@dataclass
class Row:
    setting: tuple[tuple[str, str], ...]  # (axis, label) of every axis but the method axis
    method: str  # the method axis label (or the spec's label)
    paper_method: str  # the spec's label: CosFace, LEAP-CF, ...
    seeds: list[int]
    values: dict[str, dict[int, float]]  # metric -> seed -> value
    metrics: tuple[str, ...] = METRICS  # percent columns, in order
    stats: dict[str, Spread] = field(default_factory=dict)
    baseline: str | None = None
    delta: dict[str, Spread] = field(default_factory=dict)


def build_rows(
    results: list[CellResult],
    method_axis: str,
    baselines: dict[str, str],
    metrics: tuple[str, ...] = METRICS,
) -> list[Row]:
    """Group cell results by setting × method (in first-seen order) and compute the table."""
    rows: dict[tuple, Row] = {}
    for result in results:
        setting = tuple(
            (axis, label) for axis, label in result.labels.items() if axis != method_axis
        )
        method = result.labels.get(method_axis, result.method)
        key = (setting, method)
        row = rows.get(key)
        if row is None:
            row = rows[key] = Row(setting, method, result.method, [], {}, tuple(metrics))
        row.seeds.append(result.seed)
        for metric in (*metrics, *(v for v, _ in VARIANCES)):
            row.values.setdefault(metric, {})[result.seed] = result.metrics.get(metric, math.nan)
    table = list(rows.values())
    has_method_axis = any(method_axis in result.labels for result in results)
    for row in table:
        row.stats = {
            metric: Spread.of(list(values.values())) for metric, values in row.values.items()
        }
        wanted = baselines.get(row.paper_method)
        if not has_method_axis or wanted is None:
            continue
        matches = [
            other
            for other in table
            if other.setting == row.setting and other.paper_method == wanted
        ]
        if len(matches) > 1:
            # Several rows of the baseline's kind (e.g. two CosFace margins): prefer the one
            # whose axis label is the baseline's name, else leave the delta out.
            matches = [other for other in matches if other.method == wanted]
        if len(matches) != 1:
            continue
        base = matches[0]
        row.baseline = base.method
        for metric in metrics:
            mine, theirs = row.values[metric], base.values[metric]
            row.delta[metric] = Spread.of([mine[s] - theirs[s] for s in mine if s in theirs])
    return table


def _percent(spread: Spread, signed: bool = False) -> str:
    if spread.n == 0:
        return "–"
    mean = f"{100 * spread.mean:+.1f}" if signed else f"{100 * spread.mean:.1f}"
    return mean if math.isnan(spread.std) else f"{mean} ± {100 * spread.std:.1f}"


def _variance(spread: Spread) -> str:
    if spread.n == 0:
        return "–"
    return (
        f"{spread.mean:.4f}" if math.isnan(spread.std) else f"{spread.mean:.4f} ± {spread.std:.4f}"
    )


def headers(rows: list[Row]) -> list[str]:
    axes = [axis for axis, _ in rows[0].setting] if rows else []
    names = [HEADERS.get(m, m) for m in (rows[0].metrics if rows else METRICS)]
    return [
        *axes,
        "method",
        "seeds",
        *names,
        *(f"Δ{name}" for name in names),
        "vs",
        *(h for _, h in VARIANCES),
    ]


def cells(row: Row) -> list[str]:
    """A row's display strings, in :func:`headers` order."""
    return [
        *(label for _, label in row.setting),
        row.method,
        str(len(row.seeds)),
        *(_percent(row.stats[m]) for m in row.metrics),
        *(_percent(row.delta[m], signed=True) if m in row.delta else "–" for m in row.metrics),
        row.baseline or "–",
        *(_variance(row.stats[v]) for v, _ in VARIANCES),
    ]


def _md(text: str) -> str:
    """Escape what Markdown would eat: ``<H20,S5>`` reads as an HTML tag, ``|`` as a column."""
    return text.replace("<", "\\<").replace("|", "\\|")


def to_markdown(rows: list[Row]) -> str:
    head = headers(rows)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_md(text) for text in cells(row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def to_csv(rows: list[Row]) -> str:
    """Machine-readable: raw fractions (not percent), std empty for one seed."""
    axes = [axis for axis, _ in rows[0].setting] if rows else []
    metrics = rows[0].metrics if rows else METRICS
    columns = [*axes, "method", "paper_method", "seeds"]
    for metric in (*metrics, *(v for v, _ in VARIANCES)):
        columns += [f"{metric}_mean", f"{metric}_std"]
    for metric in metrics:
        columns += [f"delta_{metric}_mean", f"delta_{metric}_std"]
    columns.append("baseline")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)

    def number(value: float) -> str:
        return "" if math.isnan(value) else f"{value:.6g}"

    for row in rows:
        line = [
            *(label for _, label in row.setting),
            row.method,
            row.paper_method,
            " ".join(str(s) for s in row.seeds),
        ]
        for metric in (*metrics, *(v for v, _ in VARIANCES)):
            line += [number(row.stats[metric].mean), number(row.stats[metric].std)]
        for metric in metrics:
            spread = row.delta.get(metric, Spread(math.nan, math.nan, 0))
            line += [number(spread.mean), number(spread.std)]
        line.append(row.baseline or "")
        writer.writerow(line)
    return buffer.getvalue()
