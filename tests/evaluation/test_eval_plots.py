"""Plots are written as real, readable PNG files."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from leap_core.evaluation.angular import class_angular_stats
from leap_core.evaluation.plots import (
    plot_angular_variance,
    plot_class_frequency,
    plot_cmc,
    plot_roc,
    plot_tsne,
    select_identities,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _check_png(path: Path, minimum_bytes: int = 8_000) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > minimum_bytes


def _long_tailed(seed: int = 0):
    rng = np.random.default_rng(seed)
    counts = np.concatenate([rng.integers(30, 80, 10), np.full(40, 5)])
    labels = np.repeat(np.arange(50), counts)
    centres = rng.standard_normal((50, 16))
    feats = centres[labels] + 0.7 * rng.standard_normal((labels.shape[0], 16))
    return counts, labels, feats


def test_angular_variance_plot_dimensions(tmp_path: Path) -> None:
    counts, labels, feats = _long_tailed()
    stats = class_angular_stats(feats, labels)
    out = plot_angular_variance(stats, counts > 5, tmp_path / "plots" / "angular.png")
    assert out == tmp_path / "plots" / "angular.png"
    _check_png(out)
    image = matplotlib.image.imread(out)
    assert image.shape[:2] == (576, 768)  # 4.8 x 6.4 inches at 120 dpi


def test_class_frequency_plot(tmp_path: Path) -> None:
    counts, _, _ = _long_tailed()
    _check_png(plot_class_frequency(counts, tmp_path / "freq.png", head=counts > 5))
    _check_png(plot_class_frequency(counts, tmp_path / "freq_plain.png"))
    with pytest.raises(ValueError, match="counts is empty"):
        plot_class_frequency(np.array([], dtype=int), tmp_path / "none.png")


def test_cmc_plot(tmp_path: Path) -> None:
    cmc = np.minimum(1.0, 0.6 + 0.02 * np.arange(50))
    _check_png(
        plot_cmc({"baseline": cmc, "LEAP": np.minimum(1.0, cmc + 0.05)}, tmp_path / "cmc.png")
    )
    _check_png(plot_cmc(cmc, tmp_path / "cmc_single.png"))


def test_roc_plot_marks_points_and_unmeasurable_targets(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.normal(0.0, 0.1, 5000), rng.normal(0.5, 0.15, 500)])
    same = np.concatenate([np.zeros(5000, bool), np.ones(500, bool)])
    _check_png(plot_roc(scores, same, tmp_path / "roc.png"))


def test_tsne_plot(tmp_path: Path) -> None:
    counts, labels, feats = _long_tailed(1)
    head_ids = np.flatnonzero(counts > 5)
    chosen = select_identities(labels, head_ids, num_head=3, num_tail=3, seed=0)
    assert np.isin(chosen, head_ids).sum() == 3 and chosen.shape == (6,)
    _check_png(
        plot_tsne(feats, labels, head_ids, tmp_path / "tsne.png", identities=chosen, perplexity=10)
    )
