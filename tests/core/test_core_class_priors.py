"""The long-tail loss terms on hand-derived cases: class-balanced weights, LDAM's margins,
logit adjustment and label smoothing, alone and through the criterion.

Each loss case is a two-class NormFace or CosFace head at scale 1 whose cosines are 1 and 0
(the feature along one class weight, orthogonal to the other), so the loss is written out
by hand from the formula of the method's paper.
"""

from __future__ import annotations

import math

import pytest
import torch

from leap_core.class_priors import ClassBalance, class_balanced_weights, ldam_margins, log_prior
from leap_core.distributed import ClassShard
from leap_core.heads import HEADS
from leap_core.losses import LEAPLoss


def two_class_head(kind: str = "normface", margin: float = 0.0):
    """A head whose class weights are the two axes of the plane."""
    head = HEADS[kind](2, 2, scale=1.0, margin=margin).double()
    with torch.no_grad():
        head.weight.copy_(torch.eye(2, dtype=torch.float64))
    return head


ALONG_0 = torch.tensor([[1.0, 0.0]], dtype=torch.float64)  # cosines (1, 0)
ALONG_1 = torch.tensor([[0.0, 1.0]], dtype=torch.float64)  # cosines (0, 1)


def test_class_balanced_weights_follow_the_effective_number_and_sum_to_the_classes():
    # beta 1/2, sizes 1, 2, 4: (1 - b)/(1 - b^K) = 1, 2/3, 8/15, summing to 11/5; scaled to
    # sum to 3 they are 15/11, 10/11, 8/11.
    weights = class_balanced_weights([1, 2, 4], 0.5)
    torch.testing.assert_close(weights, torch.tensor([15, 10, 8], dtype=torch.float64) / 11)
    assert torch.equal(class_balanced_weights([1, 2, 4], 0.0), torch.ones(3, dtype=torch.float64))
    # beta close to 1: inverse frequency, 1/K scaled to sum to 3 (4/7·(4, 2, 1)/4 …).
    near_one = class_balanced_weights([1, 2, 4], 1 - 1e-9)
    torch.testing.assert_close(
        near_one, torch.tensor([4, 2, 1], dtype=torch.float64) * 3 / 7, rtol=1e-6, atol=0
    )
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\), got 1\.0"):
        class_balanced_weights([1, 2], 1.0)


def test_ldam_margins_fall_as_the_fourth_root_of_the_class_size():
    # K_min = 1: m_i = 0.5 · K_i^(-1/4), so 0.5, 0.25 and 0.5/3 for 1, 16 and 81 images.
    margins = ldam_margins([16, 1, 81], 0.5)
    torch.testing.assert_close(margins, torch.tensor([0.25, 0.5, 0.5 / 3], dtype=torch.float64))


def test_log_prior_is_the_log_share_of_the_training_images():
    torch.testing.assert_close(
        log_prior([1, 3]), torch.tensor([math.log(0.25), math.log(0.75)], dtype=torch.float64)
    )


def criterion(head, counts, **balance):
    shard = ClassShard(2)
    return LEAPLoss(head, shard=shard, balance=ClassBalance(counts, shard, **balance))


def test_label_smoothing_spreads_epsilon_over_every_class():
    # z = (1, 0), label 0, eps 0.2 over C = 2: q = (0.9, 0.1), so the loss is
    # log(e + 1) − 0.9·1 − 0.1·0.
    loss = criterion(two_class_head(), [1, 1], label_smoothing=0.2)(ALONG_0, torch.tensor([0]), 0)
    assert float(loss.detach()) == pytest.approx(math.log(math.e + 1) - 0.9, rel=1e-12)


def test_logit_adjustment_adds_tau_log_prior_to_each_logit():
    # Sizes 3 and 1, tau 1: z = (1 + log 3/4, log 1/4); label 0:
    # log(e·3/4 + 1/4) − 1 − log 3/4.
    loss = criterion(two_class_head(), [3, 1], logit_adjustment=1.0)(ALONG_0, torch.tensor([0]), 0)
    expected = math.log(math.e * 0.75 + 0.25) - 1 - math.log(0.75)
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-12)
    # tau 2 doubles the bias: z = (1 + 2 log 3/4, 2 log 1/4) for the same sample.
    loss = criterion(two_class_head(), [3, 1], logit_adjustment=2.0)(ALONG_0, torch.tensor([0]), 0)
    expected = math.log(math.e * 0.75**2 + 0.25**2) - 1 - 2 * math.log(0.75)
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-12)


def test_class_balanced_weights_give_the_batchs_weighted_mean_from_their_epoch():
    # Sizes 1 and 3, beta 1/2: class weights 1 and 4/7 (before scaling, which cancels in the
    # weighted mean), so a batch of one sample of each has weights 7/11 and 4/11.
    features = torch.cat([ALONG_0, ALONG_0])
    labels = torch.tensor([0, 1])
    right = math.log(math.e + 1) - 1  # label 0, z = (1, 0)
    wrong = math.log(math.e + 1)  # label 1, z = (1, 0)
    loss = criterion(two_class_head(), [1, 3], class_balanced_beta=0.5, reweight_start_epoch=2)
    assert float(loss(features, labels, 1).detach()) == pytest.approx(
        (right + wrong) / 2, rel=1e-12
    )
    assert float(loss(features, labels, 2).detach()) == pytest.approx(
        (7 * right + 4 * wrong) / 11, rel=1e-12
    )


def test_ldam_margins_move_each_classs_target_logit_by_its_own_margin():
    # CosFace, margin 0.4 on the smallest class: sizes 1 and 16 give margins 0.4 and 0.2. A
    # sample of class 1 along its weight: z = (0, 1 − 0.2); of class 0: z = (1 − 0.4, 0).
    head = two_class_head("cosface", margin=0.4)
    head.set_class_margins(ldam_margins([1, 16], 0.4))
    loss = LEAPLoss(head)
    one = float(loss(ALONG_1, torch.tensor([1]), 0).detach())
    zero = float(loss(ALONG_0, torch.tensor([0]), 0).detach())
    assert one == pytest.approx(math.log(1 + math.exp(0.8)) - 0.8, rel=1e-12)
    assert zero == pytest.approx(math.log(1 + math.exp(0.6)) - 0.6, rel=1e-12)


def test_arcface_ldam_margins_are_angles_per_class():
    # ArcFace, sizes 1 and 16, largest margin 0.4 rad: a class-1 sample at 60° from its
    # weight has the target logit cos(60° + 0.2), the other logit cos 30°.
    head = two_class_head("arcface", margin=0.4)
    head.set_class_margins(ldam_margins([1, 16], 0.4))
    angle = math.pi / 3
    features = torch.tensor([[math.sin(angle), math.cos(angle)]], dtype=torch.float64)
    loss = float(LEAPLoss(head)(features, torch.tensor([1]), 0).detach())
    target, other = math.cos(angle + 0.2), math.cos(math.pi / 2 - angle)
    expected = math.log(math.exp(target) + math.exp(other)) - target
    assert loss == pytest.approx(expected, rel=1e-12)


def test_per_class_margins_are_checked_and_normface_takes_none():
    head = two_class_head("cosface", margin=0.4)
    with pytest.raises(ValueError, match=r"class_margins must have shape \(2,\), got \(3,\)"):
        head.set_class_margins(torch.zeros(3))
    with pytest.raises(ValueError, match=r"got -0\.1 at class 1"):
        head.set_class_margins(torch.tensor([0.1, -0.1], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"class_margins must lie in \[0, 0.0\], got 0.2"):
        two_class_head().set_class_margins(torch.tensor([0.2, 0.2]))
    arc = two_class_head("arcface", margin=0.4)
    with pytest.raises(ValueError, match=r"got 4\.0 at class 0"):
        arc.set_class_margins(torch.tensor([4.0, 0.1]))


def test_class_balance_rejects_bad_arguments_naming_them():
    shard = ClassShard(2)
    with pytest.raises(ValueError, match="class_counts has 3 classes but the run has 2"):
        ClassBalance([1, 2, 3], shard)
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\), got 1.0"):
        ClassBalance([1, 2], shard, label_smoothing=1.0)
    with pytest.raises(ValueError, match=r"logit_adjustment must be a number >= 0, got -1\.0"):
        ClassBalance([1, 2], shard, logit_adjustment=-1.0)
    with pytest.raises(ValueError, match="reweight_start_epoch must be a non-negative integer"):
        ClassBalance([1, 2], shard, class_balanced_beta=0.9, reweight_start_epoch=-1)
