"""On a CUDA device: the fused head loss (with the cloud, the loss terms and Partial FC's
class sample) against the float64 CPU reference, the class sample drawn on the device, and
a tiny run with AMP and ``channels_last``.

Marked ``cuda``: deselected everywhere but ``pytest -m cuda``, which
``benchmarks/gpu_check.sh`` runs on a GPU machine.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from leap_core.distributed import ClassShard
from leap_core.heads import HEADS, ClassSampler, CloudRows, SampledClasses
from leap_core.heads.loss_terms import LossTerms
from leap_core.heads.workspace import Workspace
from leap_core.training.trainer import Trainer

pytestmark = pytest.mark.cuda

CUDA = torch.device("cuda")
CLASSES, DIM, BATCH = 40, 16, 12
KEPT = torch.tensor([0, 3, 5, 8, 9, 13, 17, 21, 22, 26, 30, 31, 35, 38])


def problem():
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(CLASSES, DIM, generator=generator, dtype=torch.float64)
    features = torch.randn(BATCH, DIM, generator=generator, dtype=torch.float64)
    labels = KEPT[torch.randint(0, KEPT.numel(), (BATCH,), generator=generator)]
    rows = torch.tensor([1, 4, 6, 10])
    offsets = torch.randn(4, CLASSES, generator=generator, dtype=torch.float64) * 0.3
    raw = torch.rand(BATCH, generator=generator, dtype=torch.float64) + 0.1
    bias = torch.randn(CLASSES, generator=generator, dtype=torch.float64)
    terms = LossTerms(raw / raw.sum(), bias, label_smoothing=0.1)
    return weight, features, labels, rows, offsets, terms


@pytest.mark.parametrize("kind", ["cosface", "arcface"])
def test_the_fused_loss_on_cuda_equals_the_float64_cpu_reference(kind):
    weight, features, labels, rows, offsets, terms = problem()
    reference = HEADS[kind](DIM, CLASSES, scale=16.0, margin=0.3).double()
    with torch.no_grad():
        reference.weight.copy_(weight)
    x = features.clone().requires_grad_()
    logits = (reference(x, labels, CloudRows(rows, offsets.clone())) + terms.logit_bias)[:, KEPT]
    per_sample = F.cross_entropy(
        logits, torch.searchsorted(KEPT, labels), reduction="none", label_smoothing=0.1
    )
    expected = (per_sample * terms.weights).sum()
    expected.backward()

    head = HEADS[kind](DIM, CLASSES, scale=16.0, margin=0.3).to(CUDA)
    with torch.no_grad():
        head.weight.copy_(weight.float())
    y = features.float().to(CUDA).requires_grad_()
    on_device = LossTerms(terms.weights.float().to(CUDA), terms.logit_bias.float().to(CUDA), 0.1)
    cloud = CloudRows(rows.to(CUDA), offsets[:, KEPT].float().to(CUDA))
    loss, _ = head.loss(
        y,
        labels.to(CUDA),
        Workspace(),
        cloud,
        ClassShard(CLASSES),
        on_device,
        SampledClasses(KEPT.to(CUDA)),
    )
    loss.backward()
    assert math.isclose(float(loss), float(expected), rel_tol=1e-4)
    torch.testing.assert_close(y.grad.cpu().double(), x.grad, rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(
        head.weight.grad.cpu().double(), reference.weight.grad, rtol=1e-3, atol=1e-5
    )


def test_the_class_sample_is_drawn_on_the_device_with_every_positive():
    labels = torch.tensor([3, 77, 512, 999], device=CUDA)
    sample = ClassSampler(0.1, ClassShard(1000), seed=4).draw(labels, step=9)
    assert sample is not None and sample.rows.device.type == "cuda"
    rows = sample.rows.tolist()
    assert len(rows) == 100 == len(set(rows)) and rows == sorted(rows)
    assert {3, 77, 512, 999} <= set(rows)


def test_a_tiny_run_trains_on_cuda_with_amp_and_channels_last(tiny_spec, tmp_path):
    spec = tiny_spec(
        train={"epochs": 2, "device": "cuda", "amp": True},
        method={"head": {"sample_rate": 0.5}, "leap": {"mode": "full", "cloud_start_epoch": 1}},
    )
    trainer = Trainer(spec, tmp_path)
    metrics = trainer.fit()
    assert trainer.device.type == "cuda" and trainer.amp
    assert math.isfinite(metrics["train_loss"]) and 0.0 <= metrics["mAP"] <= 1.0
    convolution = next(p for p in trainer.model.parameters() if p.dim() == 4)
    assert convolution.is_contiguous(memory_format=torch.channels_last)
