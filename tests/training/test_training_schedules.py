"""Learning-rate schedules: values computed by hand."""

from __future__ import annotations

import math

import pytest

from leap_core.schedules import cosine, triangular, warmup_multistep


def test_warmup_multistep():
    # Warm-up from 0.01·lr to lr over 10 epochs, ×0.1 at 40 and again at 70.
    lr = 3.5e-4
    assert warmup_multistep(0, lr) == pytest.approx(3.5e-6)
    assert warmup_multistep(5, lr) == pytest.approx(lr * (0.01 + 0.99 * 0.5))
    assert warmup_multistep(10, lr) == pytest.approx(lr)
    assert warmup_multistep(39.99, lr) == pytest.approx(lr)
    assert warmup_multistep(40, lr) == pytest.approx(lr * 0.1)
    assert warmup_multistep(70, lr) == pytest.approx(lr * 0.01)
    assert warmup_multistep(3, 1.0, warmup_epochs=0, milestones=[2]) == pytest.approx(0.1)


def test_cosine():
    assert cosine(0, 1.0, 10) == pytest.approx(1.0)
    assert cosine(5, 1.0, 10) == pytest.approx(0.5)
    assert cosine(10, 1.0, 10, min_lr=0.1) == pytest.approx(0.1)
    assert cosine(1, 1.0, 10, warmup_epochs=2) == pytest.approx(0.5)
    # After warm-up the half cosine spans the remaining 8 epochs: t = 6 is its middle.
    assert cosine(6, 1.0, 10, warmup_epochs=2) == pytest.approx(0.5)
    assert cosine(4, 1.0, 10, warmup_epochs=2) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_triangular_cycles():
    # 10-epoch cycles from 0.01 to 0.1: peak at the middle, back at the end.
    assert triangular(0, 0.01, 0.1, 10) == pytest.approx(0.01)
    assert triangular(2.5, 0.01, 0.1, 10) == pytest.approx(0.055)
    assert triangular(5, 0.01, 0.1, 10) == pytest.approx(0.1)
    assert triangular(7.5, 0.01, 0.1, 10) == pytest.approx(0.055)
    assert triangular(25, 0.01, 0.1, 10) == pytest.approx(0.1)  # third cycle's peak
