"""A one-page summary of a run, logged as ``summary.html``: the headline metrics and the
figures, in one self-contained file (images inlined), so one click in the MLflow UI
shows the result instead of a walk through the artifact tree."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

#: Metrics shown first, in this order, with how to show them; the rest follow by name.
HEADLINE = [
    ("rank1", "rank-1", "percent"),
    ("rank5", "rank-5", "percent"),
    ("mAP", "mAP", "percent"),
    ("mINP", "mINP", "percent"),
    ("lfw_accuracy", "LFW accuracy", "percent"),
    ("final_train_accuracy_head", "train accuracy, head classes", "percent"),
    ("final_train_accuracy_tail", "train accuracy, tail classes", "percent"),
    ("final_unseen_accuracy_tail", "unseen-image accuracy, tail classes", "percent"),
    ("train_loss", "final training loss", "number"),
]


def _shown(value: float, kind: str) -> str:
    if not math.isfinite(value):
        return "–"
    return f"{value:.1%}" if kind == "percent" else f"{value:.4g}"


def summary_html(title: str, subtitle: str, metrics: dict[str, float], figures: list[Path]) -> str:
    """The page: a title, the headline metrics present in ``metrics``, then each figure."""
    rows = [
        f"<tr><th>{html.escape(label)}</th><td>{_shown(metrics[key], kind)}</td></tr>"
        for key, label, kind in HEADLINE
        if key in metrics
    ]
    images = [
        f"<figure><img alt='{html.escape(path.stem)}' src='data:image/png;base64,"
        f"{base64.b64encode(path.read_bytes()).decode()}'>"
        f"<figcaption>{html.escape(path.stem.replace('_', ' '))}</figcaption></figure>"
        for path in figures
        if path.suffix == ".png"
    ]
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:sans-serif;margin:1.5em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}"
        "th,td{padding:.25em .8em;border-bottom:1px solid #ddd;text-align:left}"
        "td{text-align:right;font-variant-numeric:tabular-nums}"
        "figure{display:inline-block;margin:.5em;vertical-align:top}"
        "img{max-width:560px}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p>"
        f"<table>{''.join(rows)}</table>{''.join(images)}</body></html>"
    )
