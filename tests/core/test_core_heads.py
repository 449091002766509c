"""Margin heads: logits against hand-derived values (spec §2, §6)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from leap_core.heads import ArcFaceHead, CosFaceHead, NormFaceHead

# Class weights point at angles 0, π/2 and π (with arbitrary norms, which the head must
# normalise away); the feature points at π/3. So θ = (π/3, π/6, 2π/3) and
# cos θ = (1/2, √3/2, −1/2) exactly.
WEIGHTS = [[2.0, 0.0], [0.0, 3.0], [-0.5, 0.0]]
FEATURE = [[0.7 * math.cos(math.pi / 3), 0.7 * math.sin(math.pi / 3)]]
THETA = [math.pi / 3, math.pi / 6, 2 * math.pi / 3]
COS = [0.5, math.sqrt(3) / 2, -0.5]


def make(head_cls, dtype=torch.float32, **kwargs):
    head = head_cls(2, 3, **kwargs)
    with torch.no_grad():
        head.weight.copy_(torch.tensor(WEIGHTS))
    return head.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_normface_logits_are_scaled_cosines(dtype):
    head = make(NormFaceHead, dtype, scale=10.0)
    logits = head(torch.tensor(FEATURE, dtype=dtype), torch.tensor([1]))
    expected = torch.tensor([[10 * c for c in COS]], dtype=logits.dtype)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)
    assert logits.dtype == dtype


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cosface_subtracts_margin_from_target_only(dtype):
    head = make(CosFaceHead, dtype, scale=24.0, margin=0.2)
    logits = head(torch.tensor(FEATURE, dtype=dtype), torch.tensor([0]))
    expected = torch.tensor([[24 * (0.5 - 0.2), 24 * COS[1], 24 * COS[2]]], dtype=dtype)
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_arcface_adds_angular_margin_to_target_only(dtype):
    head = make(ArcFaceHead, dtype, scale=16.0, margin=0.5)
    logits = head(torch.tensor(FEATURE, dtype=dtype), torch.tensor([2]))
    target = 16 * math.cos(2 * math.pi / 3 + 0.5)
    expected = torch.tensor([[16 * COS[0], 16 * COS[1], target]], dtype=dtype)
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=0)


def test_arcface_target_angle_is_clipped_at_pi():
    # θ_2 = 2π/3 and m = 1.5: θ + m > π, so the target cosine is cos(π) = −1.
    head = make(ArcFaceHead, scale=16.0, margin=1.5)
    logits = head(torch.tensor(FEATURE), torch.tensor([2]))
    assert logits[0, 2].item() == pytest.approx(-16.0, abs=1e-5)


@pytest.mark.parametrize("head_cls,margin", [(CosFaceHead, 0.35), (ArcFaceHead, 0.5)])
def test_offsets_follow_equations_7_and_8(head_cls, margin):
    head = make(head_cls, torch.float64, scale=8.0, margin=margin)
    alpha = torch.tensor([[0.3, -0.2, 0.25]], dtype=torch.float64)
    logits = head(torch.tensor(FEATURE, dtype=torch.float64), torch.tensor([1]), alpha)
    a = alpha[0].tolist()
    if head_cls is CosFaceHead:
        target = math.cos(THETA[1] + a[1]) - margin
    else:
        target = math.cos(THETA[1] + a[1] + margin)
    expected = [8 * math.cos(THETA[0] + a[0]), 8 * target, 8 * math.cos(THETA[2] + a[2])]
    torch.testing.assert_close(
        logits[0], torch.tensor(expected, dtype=torch.float64), atol=1e-5, rtol=0
    )


def test_offsets_are_clipped_to_zero_and_pi():
    head = make(NormFaceHead, torch.float64, scale=5.0)
    # θ_0 − 2 < 0 → cos 0 = 1; θ_2 + 2 > π → cos π = −1; the target θ_1 − 1 < 0 → 1.
    alpha = torch.tensor([[-2.0, -1.0, 2.0]], dtype=torch.float64)
    logits = head(torch.tensor(FEATURE, dtype=torch.float64), torch.tensor([1]), alpha)
    torch.testing.assert_close(
        logits[0], torch.tensor([5.0, 5.0, -5.0], dtype=torch.float64), atol=1e-5, rtol=0
    )


@pytest.mark.parametrize("head_cls", [NormFaceHead, CosFaceHead, ArcFaceHead])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zero_alpha_reproduces_baseline_bit_for_bit(head_cls, dtype):
    torch.manual_seed(3)
    head = head_cls(16, 40).to(dtype)
    features = torch.randn(12, 16, dtype=dtype)
    labels = torch.randint(0, 40, (12,))
    baseline = head(features, labels)
    with_zero = head(features, labels, torch.zeros(12, 40, dtype=dtype))
    assert torch.equal(baseline, with_zero)


def test_rows_without_offsets_keep_baseline_logits_when_others_have_them():
    torch.manual_seed(4)
    head = ArcFaceHead(8, 10)
    features, labels = torch.randn(4, 8), torch.tensor([1, 2, 3, 4])
    alpha = torch.zeros(4, 10)
    alpha[2] = 0.1
    baseline = head(features, labels)
    moved = head(features, labels, alpha)
    assert torch.equal(moved[[0, 1, 3]], baseline[[0, 1, 3]])
    assert not torch.equal(moved[2], baseline[2])


@pytest.mark.parametrize("head_cls", [NormFaceHead, CosFaceHead, ArcFaceHead])
def test_gradients_are_finite_when_feature_coincides_with_weight(head_cls):
    head = head_cls(4, 3)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [-1.0, 0, 0, 0]]))
    # cos = +1 with class 0 and −1 with class 2, for the target and a non-target.
    features = torch.tensor([[2.0, 0, 0, 0], [3.0, 0, 0, 0]], requires_grad=True)
    labels = torch.tensor([0, 2])
    alpha = torch.full((2, 3), 0.05)
    for offsets in (None, alpha):
        loss = F.cross_entropy(head(features, labels, offsets), labels)
        loss.backward()
        assert torch.isfinite(loss)
        assert torch.isfinite(features.grad).all()
        assert torch.isfinite(head.weight.grad).all()
        features.grad = None
        head.weight.grad = None


@pytest.mark.parametrize("head_cls", [NormFaceHead, CosFaceHead, ArcFaceHead])
def test_autocast_bfloat16_gives_float32_logits_close_to_full_precision(head_cls):
    torch.manual_seed(5)
    head = head_cls(32, 50)
    features = torch.randn(8, 32)
    labels = torch.randint(0, 50, (8,))
    alpha = 0.1 * torch.randn(8, 50)
    reference = head(features, labels, alpha)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = head(features.bfloat16(), labels, alpha)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    # bf16 features carry ~3 significant digits; the head works in float32 after the cast.
    torch.testing.assert_close(logits, reference, atol=0.2, rtol=0.02)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"embedding_dim": 0, "num_classes": 3}, "embedding_dim"),
        ({"embedding_dim": 4, "num_classes": -1}, "num_classes"),
        ({"embedding_dim": 4, "num_classes": 3, "scale": 0.0}, "scale"),
        ({"embedding_dim": 4, "num_classes": 3, "scale": float("nan")}, "scale"),
        ({"embedding_dim": 4, "num_classes": 3, "margin": -0.1}, "margin"),
        ({"embedding_dim": 4, "num_classes": 3, "margin": float("inf")}, "margin"),
    ],
)
def test_constructor_rejects_bad_hyper_parameters(kwargs, name):
    with pytest.raises(ValueError, match=name):
        CosFaceHead(**kwargs)


def test_arcface_margin_in_degrees_is_refused():
    with pytest.raises(ValueError, match=r"margin must be at most π radians, got 28\.6"):
        ArcFaceHead(4, 3, margin=28.6)


def test_forward_rejects_bad_inputs_naming_them():
    head = CosFaceHead(4, 3)
    good_f, good_y = torch.randn(2, 4), torch.tensor([0, 1])
    with pytest.raises(ValueError, match=r"features must have shape \(batch, 4\), got \(2, 5\)"):
        head(torch.randn(2, 5), good_y)
    with pytest.raises(ValueError, match="features must be a floating-point tensor"):
        head(torch.ones(2, 4, dtype=torch.long), good_y)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\), got label 3"):
        head(good_f, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="labels must be an integer tensor"):
        head(good_f, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"alpha must have shape \(2, 3\), got \(2, 4\)"):
        head(good_f, good_y, torch.zeros(2, 4))


def test_angular_shift_gradient_matches_autograd_of_the_plain_formula():
    from leap_core.heads.angles import COS_EPS, angular_shift, shifted_cosine

    generator = torch.Generator().manual_seed(9)
    cos = torch.rand(400, dtype=torch.float64, generator=generator) * 1.98 - 0.99
    offset = torch.randn(400, dtype=torch.float64, generator=generator) * 0.8
    offset[::7] = 0.0  # the zero-offset rule of shifted_cosine
    cos[::11] = 1.0  # the cosine clamp is active here
    for function, keep_zero in ((angular_shift, False), (shifted_cosine, True)):
        mine = cos.clone().requires_grad_()
        plain = cos.clone().requires_grad_()
        moved = function(mine, offset)
        reference = torch.cos(
            (torch.acos(plain.clamp(-1 + COS_EPS, 1 - COS_EPS)) + offset).clamp(0.0, math.pi)
        )
        if keep_zero:
            reference = torch.where(offset != 0, reference, plain)
        torch.testing.assert_close(moved, reference, rtol=0, atol=1e-12)
        weights = torch.randn(400, dtype=torch.float64, generator=generator)
        (moved * weights).sum().backward()
        (reference * weights).sum().backward()
        # Where the angle clip is active the hand-written slope uses sin(π) ≈ 1e-16 in
        # float64 instead of an exact 0: equal to 1e-9.
        torch.testing.assert_close(mine.grad, plain.grad, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("weights_need_grad", [True, False])
def test_cosines_and_their_gradients_equal_normalising_the_weights(weights_need_grad):
    # The head scales the product's columns by 1/|W_j| instead of normalising W; in float64
    # it must agree with F.linear(normalize(f), normalize(W)) and its autograd gradients.
    generator = torch.Generator().manual_seed(11)
    head = CosFaceHead(6, 9).double()
    with torch.no_grad():
        head.weight.copy_(torch.randn(9, 6, generator=generator, dtype=torch.float64) * 3)
    head.weight.requires_grad_(weights_need_grad)
    features = torch.randn(5, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(5, 9, generator=generator, dtype=torch.float64)
    cos = head.cosine(features)
    (cos * upstream).sum().backward()
    weight = head.weight.detach().clone().requires_grad_(weights_need_grad)
    twin = features.detach().clone().requires_grad_()
    expected = F.linear(F.normalize(twin, dim=1), F.normalize(weight, dim=1))
    (expected * upstream).sum().backward()
    torch.testing.assert_close(cos, expected, rtol=0, atol=1e-14)
    torch.testing.assert_close(features.grad, twin.grad, rtol=0, atol=1e-13)
    if weights_need_grad:
        torch.testing.assert_close(head.weight.grad, weight.grad, rtol=0, atol=1e-13)
    else:
        assert head.weight.grad is None
