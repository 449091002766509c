"""LEAPLoss: the criterion that ties a head to the feature cloud."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from leap_core.heads import ArcFaceHead, CosFaceHead, NormFaceHead
from leap_core.leap import FeatureCloud
from leap_core.losses import LEAPLoss

COUNTS = [40, 40, 4, 4, 4, 4]


def warmed_cloud(seed: int = 0, **kwargs) -> tuple[FeatureCloud, torch.Tensor, torch.Tensor]:
    """A vanilla cloud (T = 10: classes 0 and 1 are head) whose head classes are wide and
    tail classes narrow, so every tail class gets a cloud."""
    generator = torch.Generator().manual_seed(seed)
    cloud = FeatureCloud(COUNTS, 8, mode="vanilla", threshold=10, **kwargs)
    centres = torch.randn(6, 8, generator=generator) * 3
    spread = torch.tensor([1.0, 1.0, 0.2, 0.2, 0.2, 0.2])
    for _ in range(10):
        labels = torch.arange(6).repeat(4)
        noise = torch.randn(24, 8, generator=generator) * spread[labels, None]
        cloud.update(centres[labels] + noise, labels)
    return cloud, centres, spread


@pytest.mark.parametrize("head_cls", [NormFaceHead, CosFaceHead, ArcFaceHead])
def test_without_cloud_it_is_the_plain_cross_entropy(head_cls):
    torch.manual_seed(1)
    head = head_cls(8, 6)
    features, labels = torch.randn(10, 8), torch.randint(0, 6, (10,))
    loss = LEAPLoss(head)(features, labels, epoch=3)
    expected = F.cross_entropy(head(features, labels), labels)
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=0)


def test_before_cloud_start_the_loss_is_baseline_but_statistics_are_collected():
    cloud, centres, _ = warmed_cloud()
    written = cloud.memory.written.clone()
    head = CosFaceHead(8, 6)
    criterion = LEAPLoss(head, cloud, cloud_start_epoch=5)
    labels = torch.tensor([2, 3, 0, 1])
    features = centres[labels]
    loss = criterion(features, labels, epoch=4)
    expected = F.cross_entropy(head(features, labels), labels)
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=0)
    assert (cloud.memory.written - written).tolist() == [1, 1, 1, 1, 0, 0]
    figures = criterion.figures()
    assert figures["cloud_fraction"] == 0.0


def test_after_cloud_start_the_loss_uses_the_drawn_offsets():
    cloud, centres, _ = warmed_cloud(2)
    head = ArcFaceHead(8, 6)
    labels = torch.tensor([0, 2, 3, 1, 4, 5])
    features = centres[labels] + 0.1
    twin = FeatureCloud(COUNTS, 8, mode="vanilla", threshold=10)
    twin.load_state_dict(cloud.state_dict())
    loss = LEAPLoss(head, cloud, cloud_start_epoch=1)(features, labels, epoch=1)
    # Independent recomputation: same update, same draws, same logits.
    twin.update(features, labels)
    variance = twin.cloud_variance()
    assert variance[[0, 1]].tolist() == [0.0, 0.0] and (variance[2:] > 0).all()
    alpha = twin.sample_alpha(labels)
    expected = F.cross_entropy(head(features, labels, alpha), labels)
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-6)


def test_cloud_samples_average_independent_draws_per_tail_sample():
    cloud, centres, _ = warmed_cloud(3, cloud_samples=3)
    head = CosFaceHead(8, 6).double()  # float64: the comparison is exact up to rounding
    labels = torch.tensor([0, 2, 4])  # one head sample, two tail samples
    features = centres[labels].double()
    twin = FeatureCloud(COUNTS, 8, mode="vanilla", threshold=10, cloud_samples=3)
    twin.load_state_dict(cloud.state_dict())
    criterion = LEAPLoss(head, cloud)
    loss = criterion(features, labels, epoch=0)

    twin.update(features, labels)
    variance = twin.cloud_variance()
    index, repeats = twin.repeat_index(twin.sample_variance(labels))
    assert index.tolist() == [0, 1, 1, 1, 2, 2, 2] and repeats.tolist() == [1, 3, 3]
    rows = labels[index]
    per_row = F.cross_entropy(
        head(features[index], rows, twin.sample_alpha(rows)), rows, reduction="none"
    )
    expected = (per_row[0] + per_row[1:4].mean() + per_row[4:7].mean()) / 3
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-12)
    figures = criterion.figures()
    assert figures["cloud_fraction"] == pytest.approx(2 / 3)
    expected_std = (variance[2].sqrt() + variance[4].sqrt()).item() / 2
    assert figures["cloud_std_mean"] == pytest.approx(expected_std, rel=1e-6)


def test_figures_report_head_and_tail_angular_variance():
    cloud, centres, _ = warmed_cloud(4)
    criterion = LEAPLoss(NormFaceHead(8, 6), cloud)
    labels = torch.tensor([0, 1, 2, 3])
    criterion(centres[labels], labels, epoch=0)
    figures = criterion.figures()
    variance = cloud.class_stats().variance
    assert figures["head_angular_variance"] == pytest.approx(variance[:2].mean().item())
    assert figures["tail_angular_variance"] == pytest.approx(variance[2:].mean().item())
    # Head classes were drawn five times wider, so their angles vary more.
    assert figures["head_angular_variance"] > figures["tail_angular_variance"]
    assert set(figures) == {
        "loss",
        "accuracy",
        "cloud_fraction",
        "cloud_std_mean",
        "head_angular_variance",
        "tail_angular_variance",
    }


def test_autocast_bfloat16_step_is_finite():
    cloud, centres, _ = warmed_cloud(5)
    head = CosFaceHead(8, 6)
    backbone = torch.nn.Linear(8, 8)
    criterion = LEAPLoss(head, cloud)
    labels = torch.tensor([0, 2, 3, 4, 5, 1])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features = backbone(centres[labels])
        assert features.dtype == torch.bfloat16
        loss = criterion(features, labels, epoch=0)
    loss.backward()
    assert loss.dtype == torch.float32 and math.isfinite(loss.item())
    assert torch.isfinite(backbone.weight.grad).all() and torch.isfinite(head.weight.grad).all()


def test_constructor_and_call_reject_bad_arguments():
    head = CosFaceHead(8, 6)
    with pytest.raises(ValueError, match="cloud has 3 classes but head has 6"):
        LEAPLoss(head, FeatureCloud([3, 3, 3], 8))
    with pytest.raises(ValueError, match="cloud embedding_dim 4 differs"):
        LEAPLoss(head, FeatureCloud(COUNTS, 4))
    with pytest.raises(ValueError, match="cloud_start_epoch must be a non-negative integer"):
        LEAPLoss(head, None, cloud_start_epoch=-1)
    with pytest.raises(ValueError, match="epoch must be a non-negative integer, got -2"):
        LEAPLoss(head)(torch.randn(2, 8), torch.tensor([0, 1]), epoch=-2)
