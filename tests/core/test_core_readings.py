"""The readings the paper leaves open, as switches (spec §3, §4, §6): how many offsets a
sample gets, the constant-noise control, and classes whose memory cannot hold two angles."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from leap_core.heads import ArcFaceHead, CloudRows, CosFaceHead
from leap_core.leap import FeatureCloud
from leap_core.leap.batching import group_by_class
from leap_core.losses import LEAPLoss

# Weights at angles 0, π/2, π; a feature at π/3: θ = (π/3, π/6, 2π/3).
WEIGHTS = [[2.0, 0.0], [0.0, 3.0], [-0.5, 0.0]]
FEATURE = [[math.cos(math.pi / 3), math.sin(math.pi / 3)]]
THETA = [math.pi / 3, math.pi / 6, 2 * math.pi / 3]


def make(head_cls, margin):
    head = head_cls(2, 3, scale=8.0, margin=margin)
    with torch.no_grad():
        head.weight.copy_(torch.tensor(WEIGHTS))
    return head.double()


def write_angles(cloud: FeatureCloud, per_class: dict[int, list[float]]) -> None:
    labels = torch.tensor([c for c, angles in per_class.items() for _ in angles])
    angles = torch.tensor([a for values in per_class.values() for a in values])
    cloud.memory.write(angles, labels, group_by_class(labels))


@pytest.mark.parametrize("head_cls,margin", [(CosFaceHead, 0.35), (ArcFaceHead, 0.5)])
def test_one_offset_per_sample_moves_every_logit_by_the_same_angle(head_cls, margin):
    head = make(head_cls, margin)
    a = 0.3
    logits = head(
        torch.tensor(FEATURE, dtype=torch.float64),
        torch.tensor([1]),
        CloudRows(torch.tensor([0]), torch.tensor([[a]], dtype=torch.float64)),
    )
    target = (
        math.cos(THETA[1] + a) - margin
        if head_cls is CosFaceHead
        else math.cos(THETA[1] + a + margin)
    )
    expected = [8 * math.cos(THETA[0] + a), 8 * target, 8 * math.cos(THETA[2] + a)]
    torch.testing.assert_close(
        logits[0], torch.tensor(expected, dtype=torch.float64), atol=1e-6, rtol=0
    )


@pytest.mark.parametrize("head_cls,margin", [(CosFaceHead, 0.35), (ArcFaceHead, 0.5)])
def test_target_only_offset_leaves_the_other_logits_at_the_baseline(head_cls, margin):
    head = make(head_cls, margin)
    a = -0.2
    logits = head(
        torch.tensor(FEATURE, dtype=torch.float64),
        torch.tensor([1]),
        CloudRows(torch.tensor([0]), torch.tensor([[a]], dtype=torch.float64), shift_others=False),
    )
    target = (
        math.cos(THETA[1] + a) - margin
        if head_cls is CosFaceHead
        else math.cos(THETA[1] + a + margin)
    )
    expected = [8 * math.cos(THETA[0]), 8 * target, 8 * math.cos(THETA[2])]
    torch.testing.assert_close(
        logits[0], torch.tensor(expected, dtype=torch.float64), atol=1e-6, rtol=0
    )


@pytest.mark.parametrize("offset,width", [("per_logit", 5), ("per_sample", 1), ("target_only", 1)])
def test_draws_have_one_column_per_logit_or_one_per_sample(offset, width):
    cloud = FeatureCloud(
        [10, 10, 2, 2, 2], 2, mode="constant", constant_std=0.25, threshold=5, offset=offset
    )
    labels = torch.tensor([0, 2, 3, 1, 4] * 400)
    rows, draws = cloud.draw_rows(cloud.sample_variance(labels))
    assert draws.shape == (1200, width)
    assert set(labels[rows].tolist()) == {2, 3, 4}
    # 1200 × width draws of N(0, 0.25²): their std within 5 % of 0.25.
    assert draws.std().item() == pytest.approx(0.25, rel=0.05)
    dense = cloud.sample_alpha(labels[:5])
    assert dense.shape == (5, 5) and dense[[0, 3]].abs().sum().item() == 0.0
    if offset == "per_sample":  # the shared draw repeats across the row
        assert torch.equal(dense[1], dense[1, :1].expand(5))
    if offset == "target_only":  # the draw sits in the target's column alone
        assert dense[1].nonzero().squeeze(1).tolist() == [2]
        assert dense[4].nonzero().squeeze(1).tolist() == [4]


@pytest.mark.parametrize("offset", ["per_sample", "target_only"])
def test_loss_applies_the_reading_of_the_offsets(offset):
    torch.manual_seed(0)
    counts = [20, 20, 3, 3]
    cloud = FeatureCloud(
        counts, 4, mode="constant", constant_std=0.3, threshold=5, offset=offset, seed=7
    )
    head = CosFaceHead(4, 4, scale=10.0, margin=0.2)
    features, labels = torch.randn(6, 4), torch.tensor([0, 2, 3, 1, 2, 3])
    loss = LEAPLoss(head, cloud)(features, labels, epoch=0)
    # Replay the cloud's draws from its seed: one N(0, 0.3²) per clouded sample, in order.
    draws = torch.randn(4, 1, generator=torch.Generator().manual_seed(7)) * 0.3
    rows = torch.tensor([1, 2, 4, 5])
    cos = F.linear(F.normalize(features), F.normalize(head.weight)).detach().double()
    theta = torch.acos(cos.clamp(-1 + 1e-6, 1 - 1e-6))
    expected_logits = cos.clone()
    for draw, row in zip(draws[:, 0].double(), rows.tolist(), strict=True):
        if offset == "per_sample":
            expected_logits[row] = torch.cos((theta[row] + draw).clamp(0, math.pi))
        y = labels[row]
        expected_logits[row, y] = torch.cos((theta[row, y] + draw).clamp(0, math.pi))
    expected_logits[torch.arange(6), labels] -= 0.2
    expected = F.cross_entropy(10 * expected_logits, labels)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)


def test_constant_control_gives_every_tail_class_the_fixed_variance_and_no_head_class():
    cloud = FeatureCloud(
        [30, 30, 4, 1], 2, mode="constant", constant_std=0.2, head=[True, True, False, False]
    )
    write_angles(cloud, {0: [0.1, 0.9], 2: [0.5, 0.5]})  # statistics play no part
    assert cloud.cloud_variance().tolist() == pytest.approx([0.0, 0.0, 0.04, 0.04])


def test_single_slot_classes_get_the_whole_target_variance_in_vanilla():
    # K = [1, 1, 4, 4], P = 1: classes 0 and 1 keep one angle; T = 1 makes 2 and 3 head.
    counts, threshold = [1, 1, 4, 4], 1
    default = FeatureCloud(counts, 2, mode="vanilla", threshold=threshold)
    strict = FeatureCloud(counts, 2, mode="vanilla", threshold=threshold, single_slot="no_cloud")
    for cloud in (default, strict):
        write_angles(cloud, {0: [0.2], 1: [0.3], 2: [0.1, 0.3], 3: [0.2, 0.6]})
        assert cloud.single_slot_classes == 2
        assert cloud.classes_without_statistics() == 2
    # σ_h² = mean(var(0.1, 0.3), var(0.2, 0.6)) = mean(0.02, 0.08) = 0.05.
    assert default.cloud_variance().tolist() == pytest.approx([0.05, 0.05, 0.0, 0.0])
    assert strict.cloud_variance().tolist() == pytest.approx([0.0, 0.0, 0.0, 0.0])


def test_single_slot_classes_get_the_whole_target_variance_in_full():
    # K = [1, 3, 6]: eq. 9 weighs class 1 by 2 and class 2 by 5; class 0 takes no part.
    cloud = FeatureCloud([1, 3, 6], 2, mode="full")
    write_angles(cloud, {0: [1.5], 1: [0.1, 0.2, 0.3], 2: [0.1, 0.3, 0.5, 0.7, 0.9, 1.1]})
    var1, var2 = 0.01, 0.14  # unbiased variances of the two memories
    target = (2 * var1 + 5 * var2) / 7
    assert cloud.cloud_variance().tolist() == pytest.approx([target, target - var1, 0.0])


def test_memory_length_below_one_epoch_can_make_single_slot_classes():
    cloud = FeatureCloud([2, 5, 1], 2, P=0.5)  # capacities ceil(1), ceil(2.5), ceil(0.5)
    assert cloud.memory.capacity.tolist() == [1, 3, 1]
    assert cloud.single_slot_classes == 2
    # Never seen: every class lacks statistics.
    assert cloud.classes_without_statistics() == 3


def test_an_explicit_head_mask_is_the_clouds_split():
    # threshold 5 would make classes 0 and 2 head; the explicit mask wins.
    cloud = FeatureCloud(
        [9, 3, 9, 3], 2, mode="vanilla", threshold=5, head=[True, False, False, False]
    )
    assert cloud.is_head.tolist() == [True, False, False, False]
    write_angles(cloud, {0: [0.0, 0.4], 2: [0.1, 0.1]})
    # σ_h² from class 0 only (0.08); class 2 (K = 9 but tail by the mask) gets 0.08 − 0.
    assert cloud.cloud_variance().tolist() == pytest.approx([0.0, 0.0, 0.08, 0.0])


def test_a_checkpointed_cloud_refuses_other_readings():
    trained = FeatureCloud([10, 2], 2, mode="full", offset="per_sample")
    state = trained.state_dict()
    FeatureCloud([10, 2], 2, mode="full", offset="per_sample").load_state_dict(state)
    with pytest.raises(
        ValueError,
        match=r"method.leap.offset was 'per_sample', the spec says "
        r"'per_logit'",
    ):
        FeatureCloud([10, 2], 2, mode="full").load_state_dict(state)


def test_a_cloud_saved_before_readings_were_recorded_resumes_only_as_literal():
    state = FeatureCloud([10, 2], 2).state_dict()
    state["_extra_state"] = {k: v for k, v in state["_extra_state"].items() if k != "readings"}
    FeatureCloud([10, 2], 2, center_update="literal", spread="paper").load_state_dict(state)
    with pytest.raises(
        ValueError,
        match=r"method.leap.center_update was 'literal', the spec "
        r"says 'center_loss'",
    ):
        FeatureCloud([10, 2], 2).load_state_dict(state)


# Scripted memories for the controls: K = [10, 10, 3, 3, 3, 5], head = the two 10s.
# class : angles          : variance
#   0   : 0.1 0.3 0.5     : 0.04
#   1   : 0.2 0.4         : 0.02
#   2   : 0.1 0.2         : 0.005
#   3   : 0.3 0.3         : 0
#   4   : 0.2 0.6         : 0.08
#   5   : 0.1 0.2 0.3     : 0.01
CONTROL_COUNTS = [10, 10, 3, 3, 3, 5]
CONTROL_HEAD = [True, True, False, False, False, False]
CONTROL_ANGLES = {
    0: [0.1, 0.3, 0.5],
    1: [0.2, 0.4],
    2: [0.1, 0.2],
    3: [0.3, 0.3],
    4: [0.2, 0.6],
    5: [0.1, 0.2, 0.3],
}
# Eq. 9: σ² = (9·0.04 + 9·0.02 + 2·0.005 + 2·0 + 2·0.08 + 4·0.01) / (9 + 9 + 2 + 2 + 2 + 4)
TARGET = (9 * 0.04 + 9 * 0.02 + 2 * 0.005 + 2 * 0.08 + 4 * 0.01) / 28  # 0.75 / 28
# σ² ≈ 0.0268: classes 0 and 4 are above it.
FULL = [0.0, TARGET - 0.02, TARGET - 0.005, TARGET, 0.0, TARGET - 0.01]


def control(mode: str, **options) -> FeatureCloud:
    cloud = FeatureCloud(CONTROL_COUNTS, 2, mode=mode, head=CONTROL_HEAD, **options)
    write_angles(cloud, CONTROL_ANGLES)
    return cloud


def test_the_scripted_full_variance_is_equation_9():
    assert control("full").cloud_variance().tolist() == pytest.approx(FULL, abs=1e-8)


def test_matched_constant_control_perturbs_exactly_the_classes_full_mode_clouds():
    # Full mode clouds classes 1, 2, 3, 5 (below σ²), not 0 and 4 (above): head class 1
    # included, which the tail-only control leaves alone, and tail class 4 left out.
    matched = control("constant", constant_std=0.2, constant_classes="matched")
    assert matched.cloud_variance().tolist() == pytest.approx([0, 0.04, 0.04, 0.04, 0, 0.04])
    tail = control("constant", constant_std=0.2)
    assert tail.cloud_variance().tolist() == pytest.approx([0, 0, 0.04, 0.04, 0.04, 0.04])


def test_matched_constant_control_follows_the_statistics_as_they_change():
    matched = control("constant", constant_std=0.2, constant_classes="matched")
    # Class 4 keeps its newest three angles, (0.6, 0.1, 0.1): variance 0.0833, still above
    # σ² (now 0.0270), so it stays without offsets while class 3 keeps them.
    write_angles(matched, {4: [0.1, 0.1]})
    variance = matched.cloud_variance().tolist()
    assert variance[3] == pytest.approx(0.04) and variance[4] == 0.0
    write_angles(matched, {4: [0.1, 0.1, 0.1]})  # (0.1, 0.1, 0.1): variance 0, below σ²
    assert matched.cloud_variance()[4].item() == pytest.approx(0.04)


def test_shuffled_control_permutes_full_variances_among_tail_classes_of_one_size():
    cloud = FeatureCloud(CONTROL_COUNTS, 2, mode="shuffled", head=CONTROL_HEAD, seed=3)
    write_angles(cloud, CONTROL_ANGLES)
    assert cloud.cloud_variance().tolist() == pytest.approx(FULL, abs=1e-8)  # not yet drawn
    arrangements = set()
    features = torch.tensor([[1.0, 0.0]])
    for _ in range(60):
        # An update of class 0 alone, which refreshes the permutation; the memories of the
        # other classes are as scripted.
        cloud.observe(features, torch.tensor([0]))
        variance = cloud.cloud_variance().tolist()
        full = cloud._full().tolist()
        # Head classes (0, 1) and the only 5-image class (5) keep their own variance; the
        # three 3-image classes exchange theirs.
        assert variance[0] == full[0] and variance[1] == full[1] and variance[5] == full[5]
        assert sorted(variance[2:5]) == pytest.approx(sorted(full[2:5]))
        arrangements.add(tuple(cloud.permutation.tolist()))
    # All 3! arrangements of classes 2-4 appear in 60 draws (chance of missing one: 6·(5/6)^60).
    assert len(arrangements) == 6
    assert all(a[:2] == (0, 1) and a[5] == 5 for a in arrangements)


def test_shuffled_permutation_travels_in_the_checkpoint():
    cloud = FeatureCloud(CONTROL_COUNTS, 2, mode="shuffled", head=CONTROL_HEAD, seed=3)
    write_angles(cloud, CONTROL_ANGLES)
    for _ in range(5):
        cloud.observe(torch.tensor([[1.0, 0.0]]), torch.tensor([0]))
    restored = FeatureCloud(CONTROL_COUNTS, 2, mode="shuffled", head=CONTROL_HEAD, seed=3)
    restored.load_state_dict(cloud.state_dict())
    assert restored.permutation.tolist() == cloud.permutation.tolist()
    assert restored.cloud_variance().tolist() == cloud.cloud_variance().tolist()


def test_under_leave_one_out_two_image_classes_follow_the_single_slot_policy():
    # K = [2, 6, 6]: class 0 cannot be measured under leave_one_out (two images are at one
    # angle to each other); the paper's estimator measures it.
    counts = [2, 6, 6]
    angles = {1: [0.1, 0.3], 2: [0.1, 0.5]}  # variances 0.02 and 0.08, weights 5 and 5
    loo = FeatureCloud(counts, 2, mode="full")
    write_angles(loo, angles)
    assert loo.unmeasurable_classes == 1 and loo.single_slot_classes == 0
    assert loo.cloud_variance().tolist() == pytest.approx([0.05, 0.03, 0.0])
    strict = FeatureCloud(counts, 2, mode="full", single_slot="no_cloud")
    write_angles(strict, angles)
    assert strict.cloud_variance().tolist() == pytest.approx([0.0, 0.03, 0.0])
    paper = FeatureCloud(counts, 2, mode="full", spread="paper")
    write_angles(paper, {**angles, 0: [0.2, 0.2]})  # measured: variance 0, weight 1
    target = (5 * 0.02 + 5 * 0.08) / 11
    assert paper.cloud_variance().tolist() == pytest.approx([target, target - 0.02, 0.0])


def test_a_cloud_saved_before_the_spread_was_a_reading_resumes_only_as_the_papers():
    state = FeatureCloud([10, 3], 2, spread="paper").state_dict()
    state["_extra_state"]["readings"].pop("spread")
    FeatureCloud([10, 3], 2, spread="paper").load_state_dict(state)
    with pytest.raises(
        ValueError, match=r"method.leap.spread was 'paper', the spec says 'leave_one_out'"
    ):
        FeatureCloud([10, 3], 2).load_state_dict(state)
