"""Partial FC's class sample: which rows a step keeps, and the loss over them.

The draw is checked against its definition (every positive, ``max(1, ⌊r·C_shard⌋)`` rows,
uniform negatives, a function of seed, rank and step); the loss on a hand-derived case and,
through the criterion, against torch's cross-entropy restricted to the kept columns. The
sharded equality (two ranks equal one process for the same sample) is in
``tests/distributed/test_distributed_sharded.py``.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from leap_core.distributed import ClassShard
from leap_core.heads import HEADS, ClassSampler, SampledClasses
from leap_core.heads.workspace import Workspace
from leap_core.losses import LEAPLoss


def test_a_rate_of_one_keeps_every_row_and_draws_nothing():
    assert ClassSampler(1.0, ClassShard(50)).draw(torch.tensor([3, 7]), step=0) is None
    # Below 1, every shard draws (all ranks take one path), even one whose share is all its
    # rows: a shard of one row keeps it (a step keeps at least one row).
    sample = ClassSampler(0.1, ClassShard(9, 8, 9)).draw(torch.tensor([2]), step=0)
    assert sample is not None and sample.rows.tolist() == [0]


def test_the_sample_keeps_every_positive_and_the_shards_share_of_rows():
    sampler = ClassSampler(0.1, ClassShard(100), seed=3)
    sample = sampler.draw(torch.tensor([3, 3, 50, 99]), step=7)
    assert sample is not None
    rows = sample.rows.tolist()
    assert len(rows) == 10 == len(set(rows))  # ⌊0.1·100⌋, no row twice
    assert rows == sorted(rows)
    assert {3, 50, 99} <= set(rows)
    assert sample.columns(torch.tensor([3, 50, 99])).tolist() == [
        rows.index(3),
        rows.index(50),
        rows.index(99),
    ]


def test_more_positives_than_the_share_keeps_exactly_the_positives():
    sample = ClassSampler(0.1, ClassShard(30)).draw(torch.tensor([9, 4, 4, 20, 1]), step=0)
    assert sample is not None
    assert sample.rows.tolist() == [1, 4, 9, 20]  # 4 positives > ⌊0.1·30⌋ = 3


def test_a_shard_samples_its_own_rows_and_its_positives_among_them():
    shard = ClassShard(100, 1, 2)  # classes 50-99
    sample = ClassSampler(0.2, shard).draw(torch.tensor([3, 60, 99, 12]), step=0)
    assert sample is not None
    assert sample.size == 10  # ⌊0.2·50⌋
    assert {10, 49} <= set(sample.rows.tolist())  # classes 60 and 99
    assert max(sample.rows.tolist()) < shard.size


def test_the_draw_is_a_function_of_seed_rank_and_step():
    labels = torch.tensor([0])

    def rows(seed: int, rank: int, step: int) -> list[int]:
        sample = ClassSampler(0.1, ClassShard(200, rank, 2), seed=seed).draw(labels, step)
        assert sample is not None
        return sample.rows.tolist()

    assert rows(1, 0, 5) == rows(1, 0, 5)
    draws = {
        tuple(rows(seed, rank, step))
        for seed, rank, step in [(1, 0, 5), (1, 0, 6), (2, 0, 5), (1, 1, 5)]
    }
    assert len(draws) == 4


def test_the_negatives_are_drawn_uniformly():
    # 20 rows, 5 kept, class 0 always: each other row is kept with probability 4/19.
    sampler = ClassSampler(0.25, ClassShard(20), seed=11)
    steps = 4000
    counts = torch.zeros(20)
    for step in range(steps):
        sample = sampler.draw(torch.tensor([0]), step)
        assert sample is not None
        counts[sample.rows] += 1
    assert counts[0] == steps
    share = counts[1:] / steps
    p = 4 / 19
    sigma = math.sqrt(p * (1 - p) / steps)  # 0.0064
    assert float((share - p).abs().max()) < 5 * sigma


@pytest.mark.parametrize("rate", [0.0, -0.5, 1.5, math.nan])
def test_a_rate_outside_0_1_is_refused_naming_it(rate):
    with pytest.raises(ValueError, match="sample_rate"):
        ClassSampler(rate, ClassShard(10))


def axes_head():
    """A 3-class NormFace head at scale 1 whose class weights are the axes of space."""
    head = HEADS["normface"](3, 3, scale=1.0).double()
    with torch.no_grad():
        head.weight.copy_(torch.eye(3, dtype=torch.float64))
    return head


def test_the_sampled_softmax_is_exact_over_the_kept_rows_on_a_hand_derived_case():
    # The feature lies along class 0: cosines (1, 0, 0). Over every class the loss is
    # log(e + 2) − 1; over the kept classes 0 and 2 it is log(e + 1) − 1, and class 1,
    # left out, gets no gradient.
    head = axes_head()
    features = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([0])
    dense, _ = head.loss(features, labels, Workspace())
    torch.testing.assert_close(dense, torch.tensor(math.log(math.e + 2) - 1).double())
    sampled, correct = head.loss(
        features, labels, Workspace(), sample=SampledClasses(torch.tensor([0, 2]))
    )
    torch.testing.assert_close(sampled, torch.tensor(math.log(math.e + 1) - 1).double())
    assert correct.tolist() == [True]
    sampled.backward()
    assert head.weight.grad is not None
    assert torch.equal(head.weight.grad[1], torch.zeros(3).double())
    # d/dW_2 of log(e^{cos_0} + e^{cos_2}): softmax_2 · d cos_2/dW_2 = 1/(e + 1) · f.
    torch.testing.assert_close(
        head.weight.grad[2], torch.tensor([1 / (math.e + 1), 0.0, 0.0]).double()
    )


def criterion_problem(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    head = HEADS["cosface"](8, 40, scale=16.0, margin=0.2).double()
    with torch.no_grad():
        head.weight.copy_(torch.randn(40, 8, generator=generator, dtype=torch.float64))
    features = torch.randn(6, 8, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 40, (6,), generator=generator)
    return head, features, labels


def test_a_criterion_with_rate_one_equals_the_head_without_a_sampler_bit_for_bit():
    results = []
    for sampler in (None, ClassSampler(1.0, ClassShard(40))):
        head, features, labels = criterion_problem()
        x = features.clone().requires_grad_()
        loss = LEAPLoss(head, sampler=sampler)(x, labels, epoch=0, step=3)
        loss.backward()
        results.append((loss.detach(), x.grad, head.weight.grad))
    for first, second in zip(*results, strict=True):
        assert torch.equal(first, second)


def test_the_criterion_samples_by_step_and_equals_cross_entropy_over_the_kept_columns():
    sampler = ClassSampler(0.25, ClassShard(40), seed=5)
    head, features, labels = criterion_problem()
    criterion = LEAPLoss(head, sampler=sampler)
    x = features.clone().requires_grad_()
    loss = criterion(x, labels, epoch=0, step=9)
    loss.backward()

    reference, _, _ = criterion_problem()
    y = features.clone().requires_grad_()
    sample = sampler.draw(labels, 9)
    assert sample is not None and sample.size == 10
    kept = sample.rows
    expected = F.cross_entropy(reference(y, labels)[:, kept], torch.searchsorted(kept, labels))
    expected.backward()
    torch.testing.assert_close(loss.detach(), expected.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(x.grad, y.grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(head.weight.grad, reference.weight.grad, rtol=0, atol=1e-12)
    # Without a step, a criterion counts its calls: its second call is step 1.
    counting = LEAPLoss(head, sampler=sampler)
    counting(x.detach(), labels, epoch=0)
    second = counting(x.detach(), labels, epoch=0)
    assert torch.equal(second, counting(x.detach(), labels, epoch=0, step=1))
    assert not torch.equal(second, counting(x.detach(), labels, epoch=0, step=2))
