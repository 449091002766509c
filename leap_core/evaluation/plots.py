"""Diagnostic figures as PNG files (headless, Agg), for MLflow and reports.

Each function takes data and an output path, writes one PNG and returns the path. Figures
are built with :class:`matplotlib.figure.Figure` and the Agg canvas directly, never through
``pyplot``'s global state, so they work in worker threads and on machines without a display.
Head classes are drawn in blue, tail classes in orange, throughout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from leap_core.evaluation._validation import as_numpy, bool_vector, float_vector, int_vector
from leap_core.evaluation.angular import AngularStats
from leap_core.evaluation.face import roc_curve, tpr_at_fpr
from leap_core.evaluation.tsne import tsne

HEAD_COLOUR = "#1f77b4"
TAIL_COLOUR = "#ff7f0e"
_DPI = 120


def _figure(width: float = 6.4, height: float = 4.8) -> tuple[Figure, Any]:
    figure = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot(1, 1, 1)


def _plain_log(axis: Any) -> None:
    """Log scale labelled 1, 2, 5, 10, 20, … rather than 2×10¹ (counts read at a glance)."""
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


def _save(figure: Figure, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(out, format="png")
    return out


def plot_angular_variance(
    stats: AngularStats,
    head: Any,
    path: str | Path,
    title: str = "Intra-class angular variance vs class size",
) -> Path:
    """Scatter of each class's angle variance (rad²) against its training images ``K_i``,
    head and tail coloured, with each group's mean as a dashed line (the paper's §1 numbers).
    """
    mask = bool_vector("head", head, stats.counts.shape[0])
    has = ~np.isnan(stats.variance)
    figure, axes = _figure()
    for name, group, colour in (("head", mask, HEAD_COLOUR), ("tail", ~mask, TAIL_COLOUR)):
        pick = group & has
        if not pick.any():
            continue
        mean = float(stats.variance[pick].mean())
        axes.scatter(
            stats.counts[pick],
            stats.variance[pick],
            s=14,
            alpha=0.7,
            color=colour,
            label=f"{name} classes ({int(pick.sum())}), mean {mean:.4f}",
        )
        axes.axhline(mean, color=colour, linestyle="--", linewidth=1)
    axes.set_xscale("log")
    _plain_log(axes.xaxis)
    axes.set_xlabel("training images per class  $K_i$ (log scale)")
    axes.set_ylabel("variance of angle to class centre  (rad²)")
    axes.set_title(title)
    axes.legend(loc="best")
    axes.grid(True, alpha=0.3)
    return _save(figure, path)


def plot_class_frequency(
    counts: Any,
    path: str | Path,
    head: Any | None = None,
    title: str = "Images per class (long-tailed training set)",
) -> Path:
    """Bar chart of images per class, sorted from most to fewest: the long tail at a glance.

    ``head`` (mask over classes) colours head and tail bars; the y axis is logarithmic.
    """
    count = int_vector("counts", counts)
    if count.shape[0] == 0:
        raise ValueError("counts is empty; nothing to plot")
    mask = (
        bool_vector("head", head, count.shape[0])
        if head is not None
        else np.ones(count.shape[0], dtype=bool)
    )
    order = np.argsort(-count, kind="stable")
    ranks = np.arange(1, count.shape[0] + 1)
    figure, axes = _figure()
    for name, group, colour in (
        ("head", mask[order], HEAD_COLOUR),
        ("tail", ~mask[order], TAIL_COLOUR),
    ):
        if group.any():
            label = f"{name} classes ({int(group.sum())})" if head is not None else "classes"
            axes.bar(ranks[group], count[order][group], width=1.0, color=colour, label=label)
    axes.set_yscale("log")
    _plain_log(axes.yaxis)
    axes.set_xlabel("class rank (sorted by number of images)")
    axes.set_ylabel("training images (log scale)")
    axes.set_title(title)
    axes.legend(loc="upper right")
    axes.grid(True, axis="y", alpha=0.3)
    return _save(figure, path)


def plot_cmc(
    curves: Mapping[str, Any] | Any,
    path: str | Path,
    title: str = "Cumulative match characteristic",
) -> Path:
    """CMC curves (rank 1…max_rank vs matching rate), one per entry of ``curves``.

    ``curves`` is one CMC array or a mapping ``label -> CMC``; rank-1 is given in the legend.
    """
    named = dict(curves) if isinstance(curves, Mapping) else {"CMC": curves}
    if not named:
        raise ValueError("curves is empty; nothing to plot")
    figure, axes = _figure()
    for label, cmc in named.items():
        values = float_vector(f"curves[{label!r}]", cmc)
        if values.shape[0] == 0:
            raise ValueError(f"curves[{label!r}] is empty")
        ranks = np.arange(1, values.shape[0] + 1)
        axes.plot(
            ranks, values, marker="o", markersize=3, label=f"{label} (rank-1 {values[0]:.3f})"
        )
    axes.set_xlabel("rank")
    axes.set_ylabel("matching rate")
    axes.set_ylim(0.0, 1.02)
    axes.set_title(title)
    axes.legend(loc="lower right")
    axes.grid(True, alpha=0.3)
    return _save(figure, path)


def plot_roc(
    scores: Any,
    same: Any,
    path: str | Path,
    fpr_targets: Sequence[float] = (1e-3, 1e-4, 1e-5),
    title: str = "ROC of pair verification",
) -> Path:
    """ROC (log FPR) from pair similarities, the TPR@FPR operating points marked and
    annotated; points below the resolvable FPR are drawn at it and labelled as such."""
    fpr, tpr, _ = roc_curve(scores, same)
    floor = 1.0 / int((~bool_vector("same", same)).sum())
    measurable = [f for f in fpr_targets if f >= floor]
    skipped = [f for f in fpr_targets if f < floor]
    figure, axes = _figure()
    axes.plot(np.maximum(fpr, floor / 10), tpr, color=HEAD_COLOUR, label="ROC")
    for point in tpr_at_fpr(scores, same, measurable) if measurable else []:
        axes.scatter([point.fpr_target], [point.tpr], color=TAIL_COLOUR, zorder=3)
        axes.annotate(
            f"TPR {point.tpr:.3f} @ FPR {point.fpr_target:.0e}",
            (point.fpr_target, point.tpr),
            textcoords="offset points",
            xytext=(6, -12),
            fontsize=8,
        )
    if skipped:
        axes.axvline(
            floor,
            color="grey",
            linestyle=":",
            label=f"smallest resolvable FPR {floor:.1e} (targets "
            + ", ".join(f"{f:.0e}" for f in skipped)
            + " not measurable)",
        )
    axes.set_xscale("log")
    axes.set_xlim(floor / 10, 1.0)
    axes.set_ylim(0.0, 1.02)
    axes.set_xlabel("false positive rate (log scale)")
    axes.set_ylabel("true positive rate")
    axes.set_title(title)
    axes.legend(loc="lower right", fontsize=8)
    axes.grid(True, which="both", alpha=0.3)
    return _save(figure, path)


def select_identities(
    labels: Any, head_ids: Any, num_head: int = 8, num_tail: int = 8, seed: int = 0
) -> np.ndarray:
    """Ids of up to ``num_head`` head and ``num_tail`` tail identities present in ``labels``,
    drawn at random with ``seed`` (the paper's Fig. 1 shows 8 head classes)."""
    label = int_vector("labels", labels)
    present = np.unique(label)
    is_head = np.isin(present, int_vector("head_ids", head_ids))
    rng = np.random.default_rng(seed)
    head = rng.permutation(present[is_head])[:num_head]
    tail = rng.permutation(present[~is_head])[:num_tail]
    return np.sort(np.concatenate([head, tail]))


def plot_tsne(
    features: Any,
    labels: Any,
    head_ids: Any,
    path: str | Path,
    identities: Any | None = None,
    perplexity: float = 30.0,
    seed: int = 0,
    title: str = "t-SNE of test embeddings: head (dots) and tail (triangles)",
) -> Path:
    """t-SNE of the embeddings of a few identities: head identities as dots, tail ones as
    triangles, one colour per identity (paper Fig. 1).

    ``identities`` defaults to :func:`select_identities` (8 head, 8 tail). Perplexity is
    lowered to fit when few points remain.
    """
    feats = as_numpy("features", features)
    label = int_vector("labels", labels, feats.shape[0])
    heads = int_vector("head_ids", head_ids)
    chosen = (
        select_identities(label, heads, seed=seed)
        if identities is None
        else int_vector("identities", identities)
    )
    keep = np.isin(label, chosen)
    if keep.sum() < 3:
        raise ValueError(f"the chosen identities have {int(keep.sum())} samples; t-SNE needs 3")
    coords = tsne(feats[keep], perplexity=min(perplexity, (keep.sum() - 1) / 3), seed=seed)
    kept = label[keep]
    figure, axes = _figure(7.2, 6.0)
    palette = matplotlib.colormaps["tab20"]
    colours = [palette(i % 20) for i in range(chosen.shape[0])]
    for colour, identity in zip(colours, chosen, strict=True):
        pick = kept == identity
        is_head = bool(np.isin(identity, heads))
        axes.scatter(
            coords[pick, 0],
            coords[pick, 1],
            s=28 if is_head else 40,
            marker="o" if is_head else "^",
            color=colour,
            alpha=0.8,
            edgecolors="none" if is_head else "black",
            linewidths=0.5,
            label=f"{'head' if is_head else 'tail'} id {identity} ({int(pick.sum())})",
        )
    axes.set_xticks([])
    axes.set_yticks([])
    axes.set_xlabel("t-SNE 1")
    axes.set_ylabel("t-SNE 2")
    axes.set_title(title)
    axes.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False)
    return _save(figure, path)
