"""Sweep figures: the paper's angular-variance analysis, compared across methods.

Per setting, one figure: for every method, the intra-class angular variance (rad²) of its
classes at the end of training against the class size ``K_i``, averaged over classes of that
size and over seeds (error bars: std over seeds of the per-seed average). On data cut to
``<H h, S s>`` there are two sizes (head and tail), so the figure reads as the paper's
0.463 / 0.288 / 0.201 comparison. Per-run scatters come from
:func:`leap_core.evaluation.plots.plot_angular_variance`.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from leap_core.evaluation import plots as eval_plots
from leap_core.evaluation.angular import AngularStats
from leap_core.sweeps.results import CellResult


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+\-]+", "-", text).strip("-") or "all"


def variance_by_size(results: list[CellResult]) -> dict[int, tuple[float, float]]:
    """Class size -> (mean over seeds, std over seeds) of the per-seed mean class variance."""
    per_seed: dict[int, list[float]] = {}
    for result in results:
        counts = np.asarray(result.class_counts)
        variance = result.variance_array()
        for size in np.unique(counts):
            pick = (counts == size) & ~np.isnan(variance)
            if pick.any():
                per_seed.setdefault(int(size), []).append(float(variance[pick].mean()))
    return {
        size: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0)
        for size, v in sorted(per_seed.items())
    }


def plot_variance_by_method(groups: dict[str, list[CellResult]], path: Path, title: str) -> Path:
    """One line per method: mean class variance against class size (log x)."""
    figure = Figure(figsize=(6.4, 4.8), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    names = list(groups)
    sizes_seen: set[int] = set()
    for index, name in enumerate(names):
        by_size = variance_by_size(groups[name])
        if not by_size:
            continue
        sizes = np.array(list(by_size), dtype=float)
        sizes_seen.update(by_size)
        # Spread the methods a little along x so the error bars do not overlap.
        shift = 1.0 + 0.025 * (index - (len(names) - 1) / 2)
        means = [m for m, _ in by_size.values()]
        stds = [s for _, s in by_size.values()]
        axes.errorbar(sizes * shift, means, yerr=stds, marker="o", capsize=3, label=name)
    axes.set_xscale("log")
    # Ticks at the sizes present (a long-tail cut has few), labelled as plain numbers.
    axes.set_xticks(sorted(sizes_seen), [str(size) for size in sorted(sizes_seen)])
    axes.minorticks_off()
    axes.set_xlabel("training images per class  $K_i$ (log scale)")
    axes.set_ylabel("mean variance of angle to class centre  (rad²)")
    axes.set_title(title)
    axes.legend(loc="best", fontsize="small")
    axes.grid(True, alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, format="png")
    return path


def plot_cell_scatter(result: CellResult, path: Path) -> Path:
    """The per-run scatter of :func:`plot_angular_variance` from a stored cell result."""
    counts = np.asarray(result.class_counts)
    stats = AngularStats(counts, np.full(counts.shape, np.nan), result.variance_array())
    return eval_plots.plot_angular_variance(
        stats,
        np.asarray(result.head, dtype=bool),
        path,
        title=f"Angular variance vs class size ({result.method}, seed {result.seed})",
    )


def draw_sweep_plots(results: list[CellResult], method_axis: str, folder: Path) -> list[Path]:
    """Per setting: the method comparison; per method, the scatter of its first seed."""
    settings: dict[str, dict[str, list[CellResult]]] = {}
    for result in results:
        if not result.class_counts:
            continue
        setting = " ".join(label for axis, label in result.labels.items() if axis != method_axis)
        method = result.labels.get(method_axis, result.method)
        settings.setdefault(setting, {}).setdefault(method, []).append(result)
    drawn = []
    for setting, groups in settings.items():
        drawn.append(
            plot_variance_by_method(
                groups,
                folder / f"angular_variance_{_slug(setting)}.png",
                title=f"Intra-class angular variance at the end of training {setting}".strip(),
            )
        )
        for method, members in groups.items():
            first = min(members, key=lambda r: r.seed)
            drawn.append(
                plot_cell_scatter(
                    first, folder / "scatter" / f"{_slug(setting)}_{_slug(method)}.png"
                )
            )
    return drawn
