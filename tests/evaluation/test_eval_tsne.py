"""Exact t-SNE: separates clusters, is deterministic, checks its arguments."""

from __future__ import annotations

import numpy as np
import pytest

from leap_core.evaluation.tsne import _conditional_probabilities, tsne


def test_perplexity_calibration_hits_the_target_entropy() -> None:
    # Each row's p(j|i) must have entropy log(perplexity) (the definition of perplexity).
    import torch

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((50, 5)))
    p = _conditional_probabilities(torch.cdist(x, x).pow(2), 10.0)
    entropy = -(p * torch.log(p.clamp(min=1e-300))).sum(1)
    np.testing.assert_allclose(entropy.numpy(), np.log(10.0), atol=1e-6)
    np.testing.assert_allclose(p.sum(1).numpy(), 1.0, atol=1e-12)
    assert float(p.diagonal().abs().max()) == 0.0


def test_separates_clusters_and_is_deterministic() -> None:
    rng = np.random.default_rng(1)
    centres = 4 * rng.standard_normal((4, 20))
    labels = np.repeat(np.arange(4), 25)
    feats = centres[labels] + rng.standard_normal((100, 20))
    y = tsne(feats, perplexity=15, iterations=400, seed=3)
    assert y.shape == (100, 2) and np.isfinite(y).all()
    d = ((y[:, None] - y[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (labels[d.argmin(1)] == labels).mean() == 1.0  # nearest neighbour in 2-D agrees
    np.testing.assert_array_equal(tsne(feats, perplexity=15, iterations=400, seed=3), y)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"perplexity must be in \[1, number of points = 5\)"):
        tsne(np.ones((5, 3)), perplexity=5)
    with pytest.raises(ValueError, match="at least 3 points"):
        tsne(np.ones((2, 3)), perplexity=1)
