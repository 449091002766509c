"""The class-sharded head and feature cloud on two real gloo processes, against the
single-process head, loss and cloud on the same inputs (float64)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from leap_core.distributed import ClassShard, ShardedFeatureCloud, ShardedLEAPLoss
from leap_core.distributed.collectives import gather_batch, gather_labels
from leap_core.distributed.sharded_loss import sharded_margin_softmax_cross_entropy
from leap_core.heads import HEADS
from leap_core.heads.workspace import Workspace
from leap_core.leap import FeatureCloud
from leap_core.losses import LEAPLoss
from tests.ranks import run_ranks

pytestmark = pytest.mark.process

CLASSES, DIM, PER_RANK = 11, 6, 5  # 11 classes split 6 + 5
MARGINS = {"normface": 0.0, "cosface": 0.35, "arcface": 0.5}


def problem(kind: str, world_size: int, seed: int = 0):
    """A float64 head over all classes, a global batch, and offsets for some rows."""
    generator = torch.Generator().manual_seed(seed)
    head = HEADS[kind](DIM, CLASSES, scale=10.0, margin=MARGINS[kind]).double()
    with torch.no_grad():
        head.weight.copy_(torch.randn(CLASSES, DIM, generator=generator, dtype=torch.float64))
    features = torch.randn(PER_RANK * world_size, DIM, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, CLASSES, (PER_RANK * world_size,), generator=generator)
    rows = torch.tensor([0, 3, 4, 7, 9])
    per_logit = torch.randn(5, CLASSES, generator=generator, dtype=torch.float64) * 0.4
    per_sample = torch.randn(5, 1, generator=generator, dtype=torch.float64) * 0.4
    return head, features, labels, rows, {"per_logit": per_logit, "per_sample": per_sample}


OFFSETS = [None, "per_logit", "per_sample"]


def sharded_head_rank(rank: int, world_size: int, kind: str):
    """One process start serves every reading of the offsets."""
    return {offsets: sharded_head_step(rank, world_size, kind, offsets) for offsets in OFFSETS}


def sharded_head_step(rank: int, world_size: int, kind: str, offsets: str | None):
    head, features, labels, rows, drawn = problem(kind, world_size)
    shard = ClassShard(CLASSES, rank, world_size)
    local_head = HEADS[kind](DIM, shard.size, scale=10.0, margin=MARGINS[kind]).double()
    with torch.no_grad():
        local_head.weight.copy_(head.weight[shard.start : shard.stop])
    mine = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
    x = features[mine].clone().requires_grad_()
    row_offsets = None
    if offsets is not None:
        row_offsets = drawn[offsets]
        if offsets == "per_logit":
            row_offsets = row_offsets[:, shard.start : shard.stop]
    loss, correct = sharded_margin_softmax_cross_entropy(
        local_head,
        gather_batch(x),
        gather_labels(labels[mine]),
        shard,
        Workspace(),
        rows=None if offsets is None else rows,
        row_offsets=None if row_offsets is None else row_offsets.clone(),
    )
    loss.backward()
    return {
        "loss": loss.detach(),
        "x_grad": x.grad,
        "w_grad": local_head.weight.grad,
        "correct": correct,
    }


@pytest.mark.parametrize("kind", ["normface", "cosface", "arcface"])
def test_sharded_head_loss_and_gradients_equal_the_single_process_head(kind):
    by_offsets = run_ranks(2, sharded_head_rank, kind)
    for offsets in OFFSETS:
        check_against_single_process(kind, offsets, [r[offsets] for r in by_offsets])


def check_against_single_process(kind: str, offsets: str | None, results: list[dict]):
    head, features, labels, rows, drawn = problem(kind, 2)
    x = features.clone().requires_grad_()
    if offsets is None:
        logits = head.logits(x, labels)
    else:
        logits = head.logits(x, labels, rows, drawn[offsets].clone())
    expected = F.cross_entropy(logits, labels)
    expected.backward()
    for result in results:
        torch.testing.assert_close(result["loss"], expected.detach(), rtol=0, atol=1e-12)
        assert torch.equal(result["correct"], logits.argmax(dim=1) == labels)
    torch.testing.assert_close(
        torch.cat([r["x_grad"] for r in results]), x.grad, rtol=0, atol=1e-12
    )
    torch.testing.assert_close(
        torch.cat([r["w_grad"] for r in results]), head.weight.grad, rtol=0, atol=1e-12
    )


def batches(world_size: int, steps: int = 6):
    """Features with wide head classes (0-2, 30 images) and narrow tail classes."""
    return [(features, labels) for features, labels, _ids in identified_batches(world_size, steps)]


def identified_batches(world_size: int, steps: int = 6):
    """:func:`batches` with an image id per sample; each batch repeats its first two
    samples at its end (the same image drawn twice, as P×K does for small classes)."""
    generator = torch.Generator().manual_seed(5)
    centres = torch.randn(CLASSES, DIM, generator=generator, dtype=torch.float64) * 3
    spread = torch.where(torch.arange(CLASSES) < 3, 1.0, 0.2).double()
    out = []
    for step in range(steps):
        labels = torch.randint(0, CLASSES, (PER_RANK * world_size,), generator=generator)
        noise = torch.randn(labels.numel(), DIM, generator=generator, dtype=torch.float64)
        features = centres[labels] + noise * spread[labels, None]
        ids = torch.arange(labels.numel()) + step * labels.numel()
        features[-2:], labels[-2:], ids[-2:] = features[:2], labels[:2], ids[:2]
        out.append((features, labels, ids))
    return out


COUNTS = [30, 30, 30] + [4] * (CLASSES - 3)
CLOUD = {"mode": "vanilla", "threshold": 10, "P": 2, "gamma": 0.3}


#: The cloud settings each sharded-state case runs (the matched control with the paper's
#: estimator, LEAP with the default leave-one-out one, which counts repeated ids once).
CLOUD_CASES: dict[str, dict] = {
    "vanilla": {"mode": "vanilla"},
    "full": {"mode": "full"},
    "matched/paper": {
        "mode": "constant",
        "constant_std": 0.1,
        "constant_classes": "matched",
        "spread": "paper",
    },
}


def sharded_cloud_rank(rank: int, world_size: int):
    return {case: sharded_cloud_state(rank, world_size, case) for case in CLOUD_CASES}


def sharded_cloud_state(rank: int, world_size: int, case: str):
    shard = ClassShard(CLASSES, rank, world_size)
    settings = dict(CLOUD, **CLOUD_CASES[case])
    cloud = ShardedFeatureCloud(COUNTS, DIM, shard, **settings).double()
    for features, labels, ids in identified_batches(world_size):
        cloud.observe(features, labels, ids)
    memory = cloud.local.memory
    return {
        "centres": cloud.local.centres,
        "written": memory.written,
        "stored": [memory.stored(i) for i in range(shard.size)],
        "mean": memory.mean,
        "variance": memory.variance,
        "cloud_variance": cloud.cloud_variance(),
        "head_statistics": cloud.head_statistics(),
        "by_group": cloud.angular_variance_by_group(),
        "without": cloud.classes_without_statistics(),
    }


def test_sharded_cloud_state_equals_the_single_process_cloud():
    by_case = run_ranks(2, sharded_cloud_rank)
    for case in CLOUD_CASES:
        check_cloud([r[case] for r in by_case], case)


def check_cloud(results: list[dict], case: str):
    cloud = FeatureCloud(COUNTS, DIM, **dict(CLOUD, **CLOUD_CASES[case])).double()
    for features, labels, ids in identified_batches(2):
        cloud.update(features, labels, ids)
    variance = cloud.cloud_variance()
    assert bool((variance > 0).any())  # the case exercises real clouds
    for rank, result in enumerate(results):
        shard = ClassShard(CLASSES, rank, 2)
        mine = slice(shard.start, shard.stop)
        assert torch.equal(result["centres"], cloud.centres[mine])
        assert torch.equal(result["written"], cloud.memory.written[mine])
        for i, stored in enumerate(result["stored"]):
            assert torch.equal(stored, cloud.memory.stored(shard.start + i))
        torch.testing.assert_close(result["mean"], cloud.memory.mean[mine], equal_nan=True)
        torch.testing.assert_close(result["variance"], cloud.memory.variance[mine], equal_nan=True)
        torch.testing.assert_close(result["cloud_variance"], variance[mine], rtol=1e-12, atol=0)
        assert result["head_statistics"] == pytest.approx(cloud.head_statistics(), rel=1e-12)
        assert result["by_group"] == pytest.approx(cloud.angular_variance_by_group(), rel=1e-12)
        assert result["without"] == cloud.classes_without_statistics()


def sharded_loss_rank(rank: int, world_size: int):
    return {o: sharded_loss_run(rank, world_size, o) for o in ("per_sample", "target_only")}


def sharded_loss_run(rank: int, world_size: int, offset: str):
    shard = ClassShard(CLASSES, rank, world_size)
    head = HEADS["cosface"](DIM, CLASSES, scale=10.0, margin=0.35).double()
    with torch.no_grad():
        head.weight.copy_(
            torch.randn(
                CLASSES, DIM, generator=torch.Generator().manual_seed(1), dtype=torch.float64
            )
        )
    local_head = HEADS["cosface"](DIM, shard.size, scale=10.0, margin=0.35).double()
    with torch.no_grad():
        local_head.weight.copy_(head.weight[shard.start : shard.stop])
    cloud = ShardedFeatureCloud(COUNTS, DIM, shard, **CLOUD, offset=offset, seed=3).double()
    criterion = ShardedLEAPLoss(local_head, shard, cloud, cloud_start_epoch=1)
    losses, grads = [], []
    mine = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
    for step, (features, labels) in enumerate(batches(world_size)):
        x = features[mine].clone().requires_grad_()
        loss = criterion(x, labels[mine], epoch=0 if step < 3 else 1)
        loss.backward()
        losses.append(loss.detach())
        grads.append(x.grad)
    return {"losses": losses, "x_grads": grads, "w_grad": local_head.weight.grad}


def test_sharded_leap_loss_equals_leap_loss_when_offsets_are_shared_by_the_sample():
    # One offset per sample is drawn with the same seed on every rank, so the sharded run
    # draws exactly the single-process criterion's numbers: the whole step must agree.
    by_offset = run_ranks(2, sharded_loss_rank)
    for offset in ("per_sample", "target_only"):
        check_loss([r[offset] for r in by_offset], offset)


def check_loss(results: list[dict], offset: str):
    head = HEADS["cosface"](DIM, CLASSES, scale=10.0, margin=0.35).double()
    with torch.no_grad():
        head.weight.copy_(
            torch.randn(
                CLASSES, DIM, generator=torch.Generator().manual_seed(1), dtype=torch.float64
            )
        )
    cloud = FeatureCloud(COUNTS, DIM, **CLOUD, offset=offset, seed=3).double()
    criterion = LEAPLoss(head, cloud, cloud_start_epoch=1)
    for step, (features, labels) in enumerate(batches(2)):
        x = features.clone().requires_grad_()
        loss = criterion(x, labels, epoch=0 if step < 3 else 1)
        loss.backward()
        assert criterion.figures()["cloud_fraction"] > 0 or step < 3
        for rank, result in enumerate(results):
            torch.testing.assert_close(result["losses"][step], loss.detach(), rtol=0, atol=1e-12)
            torch.testing.assert_close(
                result["x_grads"][step],
                x.grad[rank * PER_RANK : (rank + 1) * PER_RANK],
                rtol=0,
                atol=1e-12,
            )
    torch.testing.assert_close(
        torch.cat([r["w_grad"] for r in results]), head.weight.grad, rtol=0, atol=1e-12
    )


def test_a_shard_splits_classes_contiguously_and_evenly():
    assert ClassShard(11, 0, 2).bounds() == [(0, 6), (6, 11)]
    assert [ClassShard(10, r, 4).size for r in range(4)] == [3, 3, 2, 2]
    with pytest.raises(ValueError, match="world_size 5 exceeds num_classes 4"):
        ClassShard(4, 0, 5)
    with pytest.raises(ValueError, match=r"rank must be in \[0, 2\), got 2"):
        ClassShard(4, 2, 2)
