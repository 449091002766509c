"""Exact t-SNE (van der Maaten & Hinton, 2008) in torch, for a few hundred points.

The paper's Fig. 1 shows test embeddings of a few head and a few tail identities in 2-D.
That needs t-SNE on a few hundred points, which the exact O(N²) algorithm does in seconds,
so the project does not depend on scikit-learn for one plot. The implementation follows the
original: Gaussian affinities calibrated to a perplexity by bisection (all points at once),
symmetrised joint probabilities, Student-t similarities in 2-D, gradient descent with
momentum, per-parameter gains and early exaggeration.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from leap_core.evaluation._validation import feature_matrix, positive_int

_TINY = 1e-12


def _conditional_probabilities(
    sq_dist: torch.Tensor, perplexity: float, steps: int = 64
) -> torch.Tensor:
    """Row-stochastic ``p(j|i)`` with each row's entropy equal to ``log(perplexity)``.

    Bisection on the precision ``β_i`` of every row simultaneously (in log space, since
    useful precisions span many orders of magnitude).
    """
    n = sq_dist.shape[0]
    target = math.log(perplexity)
    off_diag = ~torch.eye(n, dtype=torch.bool)
    # Shift each row by its nearest distance: same probabilities, no underflow.
    shifted = sq_dist - torch.where(off_diag, sq_dist, torch.inf).amin(1, keepdim=True)
    low = torch.full((n, 1), -30.0, dtype=sq_dist.dtype)
    high = torch.full((n, 1), 30.0, dtype=sq_dist.dtype)
    for _ in range(steps):
        log_beta = (low + high) / 2
        beta = torch.exp(log_beta)
        weights = torch.where(off_diag, torch.exp(-shifted * beta), 0.0)
        total = weights.sum(1, keepdim=True).clamp(min=_TINY)
        p = weights / total
        entropy = torch.log(total) + beta * (p * shifted).sum(1, keepdim=True)
        too_flat = entropy > target  # entropy falls as the precision grows
        low = torch.where(too_flat, log_beta, low)
        high = torch.where(too_flat, high, log_beta)
    return p


def tsne(
    features: Any,
    perplexity: float = 30.0,
    iterations: int = 1000,
    seed: int = 0,
    learning_rate: float | None = None,
    early_exaggeration: float = 12.0,
) -> np.ndarray:
    """2-D t-SNE coordinates ``(N, 2)`` of the rows of ``features``.

    ``perplexity`` must be below ``N`` (about 5-50 is typical); ``learning_rate`` defaults
    to ``max(N / early_exaggeration / 4, 50)``, the usual "auto" rule. Deterministic for a
    given ``seed``. Cosine geometry is what the models are trained for, so rows are
    L2-normalised first.
    """
    x = feature_matrix("features", features).double()
    n = x.shape[0]
    if n < 3:
        raise ValueError(f"features must hold at least 3 points for t-SNE, got {n}")
    if (
        isinstance(perplexity, bool)
        or not isinstance(perplexity, int | float)
        or not (1.0 <= perplexity < n)
    ):
        raise ValueError(f"perplexity must be in [1, number of points = {n}), got {perplexity!r}")
    iterations = positive_int("iterations", iterations)
    x = torch.nn.functional.normalize(x, dim=1)
    sq_dist = torch.cdist(x, x).pow(2)
    p = _conditional_probabilities(sq_dist, float(perplexity))
    p = (p + p.t()) / (2 * n)
    p = p.clamp(min=_TINY)
    rate = max(n / early_exaggeration / 4, 50.0) if learning_rate is None else learning_rate

    generator = torch.Generator().manual_seed(seed)
    y = 1e-4 * torch.randn((n, 2), generator=generator, dtype=torch.float64)
    velocity = torch.zeros_like(y)
    gains = torch.ones_like(y)
    exaggerated = min(250, iterations // 4)
    eye = torch.eye(n, dtype=torch.bool)
    for step in range(iterations):
        scale = early_exaggeration if step < exaggerated else 1.0
        momentum = 0.5 if step < exaggerated else 0.8
        kernel = 1.0 / (1.0 + torch.cdist(y, y).pow(2))
        kernel = kernel.masked_fill(eye, 0.0)
        q = (kernel / kernel.sum()).clamp(min=_TINY)
        forces = (scale * p - q) * kernel
        grad = 4.0 * (forces.sum(1, keepdim=True) * y - forces @ y)
        same_sign = (grad > 0) == (velocity > 0)
        gains = torch.where(same_sign, gains * 0.8, gains + 0.2).clamp(min=0.01)
        velocity = momentum * velocity - rate * gains * grad
        y = y + velocity
        y = y - y.mean(0)
    return y.numpy()
