"""The fused margin-softmax loss against the head's own logits under autograd.

The reference is ``F.cross_entropy(head(...))`` (the head's logits entry point) differentiated
by autograd, in float64, so any difference is the fused node's arithmetic, not rounding. The
inputs include what the in-place kernels treat specially: offsets that push angles past 0 and
π (the clip), a feature that coincides with a class weight (the cosine clamp), rows without
offsets, and offsets beyond ±π.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from leap_core.heads import ArcFaceHead, CloudRows, CosFaceHead, NormFaceHead
from leap_core.heads.workspace import Workspace

HEADS = [(NormFaceHead, 0.0), (CosFaceHead, 0.35), (ArcFaceHead, 0.5)]


def case(head_cls, margin, width, seed=0):
    """A float64 head, features with one row equal to a class weight (cos = 1 exactly
    after normalisation), and offsets for rows 0, 2, 3 and 5 that include clipping ones."""
    generator = torch.Generator().manual_seed(seed)
    head = head_cls(6, 9, scale=10.0, margin=margin).double()
    with torch.no_grad():
        head.weight.copy_(torch.randn(9, 6, generator=generator, dtype=torch.float64))
    features = torch.randn(7, 6, generator=generator, dtype=torch.float64)
    features[2] = head.weight[4].detach() * 3.0  # cos = 1 with class 4: the clamp is active
    labels = torch.tensor([1, 0, 4, 8, 2, 3, 5])
    rows = torch.tensor([0, 2, 3, 5])
    offsets = torch.randn(4, width, generator=generator, dtype=torch.float64) * 1.2
    offsets[1] = -2.5  # moves most angles of row 2 below 0: clipped to cos = 1
    offsets[2, 0] = 3.5  # beyond π: every angle of that row (or that logit) clips to π
    offsets[3, 0] = -4.0  # below −π
    return head, features, labels, rows, offsets


def reference(head, features, labels, rows, offsets, shift_others):
    features = features.clone().requires_grad_()
    logits = head(features, labels, CloudRows(rows, offsets.clone(), shift_others))
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    return loss.detach(), features.grad, head.weight.grad.clone()


def fused(head, features, labels, rows, offsets, shift_others, workspace=None):
    head.weight.grad = None
    features = features.clone().requires_grad_()
    loss, correct = head.loss(
        features, labels, workspace or Workspace(), CloudRows(rows, offsets.clone(), shift_others)
    )
    loss.backward()
    return loss.detach(), features.grad, head.weight.grad.clone(), correct


@pytest.mark.parametrize(("head_cls", "margin"), HEADS)
@pytest.mark.parametrize(
    ("width", "shift_others"),
    [(9, True), (1, True), (1, False)],
    ids=["per_logit", "per_sample", "target_only"],
)
def test_loss_and_gradients_equal_autograd_through_the_logits(
    head_cls, margin, width, shift_others
):
    head, features, labels, rows, offsets = case(head_cls, margin, width)
    expected = reference(head, features, labels, rows, offsets, shift_others)
    got = fused(head, features, labels, rows, offsets, shift_others)
    for name, want, have in zip(
        ("loss", "features grad", "weight grad"), expected, got[:3], strict=True
    ):
        torch.testing.assert_close(have, want, rtol=1e-10, atol=1e-12, msg=name)


@pytest.mark.parametrize(("head_cls", "margin"), HEADS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_without_offsets_the_loss_is_the_plain_cross_entropy(head_cls, margin, dtype):
    """The node forms the cross-entropy from the row maxima and sums of exponentials (the
    pieces a sharded run reduces over ranks), so it equals ``F.cross_entropy`` to rounding."""
    torch.manual_seed(3)
    head = head_cls(8, 11, margin=margin).to(dtype)
    features, labels = torch.randn(5, 8, dtype=dtype), torch.randint(0, 11, (5,))
    loss, correct = head.loss(features, labels, Workspace())
    logits = head(features, labels)
    tolerance = 1e-6 if dtype == torch.float32 else 1e-14
    torch.testing.assert_close(loss, F.cross_entropy(logits, labels), rtol=tolerance, atol=0)
    assert torch.equal(correct, logits.argmax(dim=1) == labels)


def test_the_clip_sends_cosines_to_one_and_minus_one_with_zero_slope():
    # One offset per sample: −2.5 rad takes every angle below 2.5 rad to 0 (cos 1), and
    # +3.5 rad takes every angle to π (cos −1). Their gradient is zero there.
    head, features, labels, rows, offsets = case(NormFaceHead, 0.0, 1)
    cos = F.linear(F.normalize(features), F.normalize(head.weight)).detach()
    moved = head(features, labels, CloudRows(rows, offsets.clone())).detach() / head.scale
    below = cos[2] > math.cos(2.5)
    assert bool(below.any()) and torch.equal(
        moved[2][below], torch.ones(int(below.sum()), dtype=torch.float64)
    )
    assert torch.equal(moved[3], -torch.ones(9, dtype=torch.float64))


def test_buffers_are_reused_across_steps_and_steps_stay_independent():
    head, features, labels, rows, offsets = case(CosFaceHead, 0.35, 9)
    workspace = Workspace()
    first = fused(head, features, labels, rows, offsets, True, workspace)
    held = workspace.nbytes()
    assert held > 0
    second = fused(head, features, labels, rows, offsets, True, workspace)
    assert workspace.nbytes() == held  # the same buffers, lent and given back
    for a, b in zip(first[:3], second[:3], strict=True):
        assert torch.equal(a, b)


def test_two_losses_alive_at_once_do_not_share_buffers():
    head, features, labels, rows, offsets = case(ArcFaceHead, 0.5, 1)
    workspace = Workspace()
    expected = reference(head, features, labels, rows, offsets, True)
    head.weight.grad = None
    plain = features.clone().requires_grad_()
    F.cross_entropy(head(plain, labels), labels).backward()
    head.weight.grad = None
    x1, x2 = features.clone().requires_grad_(), features.clone().requires_grad_()
    loss1, _ = head.loss(x1, labels, workspace, CloudRows(rows, offsets.clone()))
    loss2, _ = head.loss(x2, labels, workspace)  # taken while loss1's gradient is held
    loss1.backward()
    torch.testing.assert_close(x1.grad, expected[1], rtol=1e-10, atol=1e-12)
    loss2.backward()
    # The second loss, without offsets, has the plain cross-entropy's gradient.
    torch.testing.assert_close(x2.grad, plain.grad, rtol=1e-10, atol=1e-12)


def test_a_second_backward_pass_is_refused():
    head, features, labels, rows, offsets = case(CosFaceHead, 0.35, 9)
    loss, _ = head.loss(features.requires_grad_(), labels, Workspace(), CloudRows(rows, offsets))
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="one backward pass"):
        loss.backward()


def test_buffers_of_a_step_without_backward_are_not_kept_alive():
    head, features, labels, rows, offsets = case(NormFaceHead, 0.0, 9)
    workspace = Workspace()
    for _ in range(5):
        with torch.no_grad():
            head.loss(features, labels, workspace, CloudRows(rows, offsets.clone()))
    # Each step's gradient buffer was lent and never given back; the pool forgets it.
    assert len(workspace._lent) <= 1
