"""One head loss, one feature cloud and one criterion at world sizes 1 and 2.

The same objects run in this process (world size 1: one shard of all classes, collectives
that return their input) and on two real gloo processes (each rank owns a slice of the
classes). Both are held against references on the same float64 inputs: the head's logits
differentiated by autograd for the loss, and the world-size-1 cloud and criterion for the
sharded ones, which must agree to 1e-12.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from leap_core.class_priors import ClassBalance, ldam_margins
from leap_core.distributed import ClassShard
from leap_core.heads import HEADS, CloudRows, SampledClasses
from leap_core.heads.loss_terms import PLAIN, LossTerms
from leap_core.heads.workspace import Workspace
from leap_core.leap import FeatureCloud
from leap_core.losses import LEAPLoss
from tests.ranks import run_ranks

pytestmark = pytest.mark.process

CLASSES, DIM, PER_RANK = 11, 6, 5  # 11 classes split 6 + 5
MARGINS = {"normface": 0.0, "cosface": 0.35, "arcface": 0.5}
WORLD = 2


def at_world_sizes(fn, *args) -> dict[int, list]:
    """``fn(rank, world_size, *args)`` for every rank at world size 1 (in this process)
    and at world size 2 (two processes): world size → the ranks' results."""
    return {1: [fn(0, 1, *args)], WORLD: run_ranks(WORLD, fn, *args)}


def problem(kind: str, seed: int = 0):
    """A float64 head over all classes, a global batch, and offsets for some rows."""
    generator = torch.Generator().manual_seed(seed)
    head = HEADS[kind](DIM, CLASSES, scale=10.0, margin=MARGINS[kind]).double()
    with torch.no_grad():
        head.weight.copy_(torch.randn(CLASSES, DIM, generator=generator, dtype=torch.float64))
    features = torch.randn(PER_RANK * WORLD, DIM, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, CLASSES, (PER_RANK * WORLD,), generator=generator)
    rows = torch.tensor([0, 3, 4, 7, 9])
    per_logit = torch.randn(5, CLASSES, generator=generator, dtype=torch.float64) * 0.4
    per_sample = torch.randn(5, 1, generator=generator, dtype=torch.float64) * 0.4
    return head, features, labels, rows, {"per_logit": per_logit, "per_sample": per_sample}


OFFSETS = [None, "per_logit", "per_sample"]
#: ``(offsets, balanced, sampled)``: every reading of the offsets plainly, and once more with
#: every loss term on (sample weights, a logit bias, label smoothing) and a margin per class
#: (but for NormFace); then Partial FC's softmax over the rows of :data:`KEPT`, plainly and
#: with the terms.
CASES = (
    [(offsets, False, False) for offsets in OFFSETS]
    + [("per_logit", True, False)]
    + [(offsets, False, True) for offsets in OFFSETS]
    + [("per_logit", True, True), ("per_sample", True, True)]
)

#: A class sample of :func:`problem`'s batch: its classes 0, 1, 2, 4, 7 and 9, and the
#: negatives 5 and 10 (3, 6 and 8 left out; rank 0 of 2 keeps 5 of its 6 rows, rank 1 3 of 5).
KEPT = torch.tensor([0, 1, 2, 4, 5, 7, 9, 10])


def loss_terms(generator: torch.Generator) -> tuple[torch.Tensor, LossTerms]:
    """Per-class margins (of every class) and terms whose bias covers every class."""
    margins = torch.rand(CLASSES, generator=generator, dtype=torch.float64) * 0.4
    weights = torch.rand(PER_RANK * WORLD, generator=generator, dtype=torch.float64) + 0.1
    bias = torch.randn(CLASSES, generator=generator, dtype=torch.float64)
    return margins, LossTerms(weights / weights.sum(), bias, label_smoothing=0.15)


def head_rank(rank: int, world_size: int, kind: str):
    """One process start serves every case."""
    return {case: head_step(rank, world_size, kind, *case) for case in CASES}


def head_step(
    rank: int, world_size: int, kind: str, offsets: str | None, balanced: bool, sampled: bool
):
    head, features, labels, rows, drawn = problem(kind)
    assert set(labels.tolist()) <= set(KEPT.tolist())
    shard = ClassShard(CLASSES, rank, world_size)
    local = KEPT - shard.start
    mine_kept = KEPT[(local >= 0) & (local < shard.size)]
    sample = SampledClasses(mine_kept - shard.start) if sampled else None
    local_head = HEADS[kind](DIM, shard.size, scale=10.0, margin=MARGINS[kind]).double()
    with torch.no_grad():
        local_head.weight.copy_(head.weight[shard.start : shard.stop])
    terms = PLAIN
    if balanced:
        margins, whole = loss_terms(torch.Generator().manual_seed(9))
        assert whole.logit_bias is not None
        if kind != "normface":
            local_head.set_class_margins(margins[shard.start : shard.stop])
        terms = LossTerms(
            whole.weights, whole.logit_bias[shard.start : shard.stop], whole.label_smoothing
        )
    per_rank = features.shape[0] // world_size
    mine = slice(rank * per_rank, (rank + 1) * per_rank)
    x = features[mine].clone().requires_grad_()
    cloud = None
    if offsets is not None:
        row_offsets = drawn[offsets]
        if offsets == "per_logit":
            columns = mine_kept if sampled else torch.arange(shard.start, shard.stop)
            row_offsets = row_offsets[:, columns]
        cloud = CloudRows(rows, row_offsets.clone())
    loss, correct = local_head.loss(
        shard.gather_batch(x),
        shard.gather_labels(labels[mine]),
        Workspace(),
        cloud,
        shard,
        terms,
        sample,
    )
    loss.backward()
    return {
        "loss": loss.detach(),
        "x_grad": x.grad,
        "w_grad": local_head.weight.grad,
        "correct": correct,
    }


@pytest.mark.parametrize("kind", ["normface", "cosface", "arcface"])
def test_the_head_loss_and_gradients_equal_autograd_at_world_sizes_1_and_2(kind):
    by_world = at_world_sizes(head_rank, kind)
    for results in by_world.values():
        for case in CASES:
            check_against_autograd(kind, *case, [r[case] for r in results])


def check_against_autograd(
    kind: str, offsets: str | None, balanced: bool, sampled: bool, results: list[dict]
):
    """The reference: the head's logits, plus the bias, into torch's cross-entropy with
    label smoothing, weighted per sample; with a class sample, the columns of :data:`KEPT`
    only, the labels renumbered among them."""
    head, features, labels, rows, drawn = problem(kind)
    x = features.clone().requires_grad_()
    cloud = None if offsets is None else CloudRows(rows, drawn[offsets].clone())
    columns = KEPT if sampled else torch.arange(CLASSES)
    targets = torch.searchsorted(columns, labels)
    if not balanced:
        logits = head(x, labels, cloud)[:, columns]
        expected = F.cross_entropy(logits, targets)
    else:
        margins, terms = loss_terms(torch.Generator().manual_seed(9))
        assert terms.weights is not None and terms.logit_bias is not None
        if kind != "normface":
            head.set_class_margins(margins)
        logits = (head(x, labels, cloud) + terms.logit_bias)[:, columns]
        per_sample = F.cross_entropy(
            logits, targets, reduction="none", label_smoothing=terms.label_smoothing
        )
        expected = (per_sample * terms.weights).sum()
    expected.backward()
    for result in results:
        torch.testing.assert_close(result["loss"], expected.detach(), rtol=0, atol=1e-12)
        assert torch.equal(result["correct"], logits.argmax(dim=1) == targets)
    torch.testing.assert_close(
        torch.cat([r["x_grad"] for r in results]), x.grad, rtol=0, atol=1e-12
    )
    torch.testing.assert_close(
        torch.cat([r["w_grad"] for r in results]), head.weight.grad, rtol=0, atol=1e-12
    )
    if sampled:  # the rows a step leaves out get no gradient at all (partial_fc_v2)
        left_out = torch.tensor([c for c in range(CLASSES) if c not in KEPT.tolist()])
        w_grad = torch.cat([r["w_grad"] for r in results])
        assert torch.equal(w_grad[left_out], torch.zeros(left_out.numel(), DIM).double())


def batches(steps: int = 6):
    """Features with wide head classes (0-2, 30 images) and narrow tail classes, an image id
    per sample; each batch repeats its first two samples at its end (the same image drawn
    twice, as P×K does for small classes)."""
    generator = torch.Generator().manual_seed(5)
    centres = torch.randn(CLASSES, DIM, generator=generator, dtype=torch.float64) * 3
    spread = torch.where(torch.arange(CLASSES) < 3, 1.0, 0.2).double()
    out = []
    for step in range(steps):
        labels = torch.randint(0, CLASSES, (PER_RANK * WORLD,), generator=generator)
        noise = torch.randn(labels.numel(), DIM, generator=generator, dtype=torch.float64)
        features = centres[labels] + noise * spread[labels, None]
        ids = torch.arange(labels.numel()) + step * labels.numel()
        features[-2:], labels[-2:], ids[-2:] = features[:2], labels[:2], ids[:2]
        out.append((features, labels, ids))
    return out


COUNTS = [30, 30, 30] + [4] * (CLASSES - 3)
CLOUD = {"threshold": 10, "P": 2, "gamma": 0.3}

#: The cloud settings each state case runs: both versions with the default leave-one-out
#: spread (which counts repeated ids once), the matched control with the paper's estimator,
#: and the shuffled control, whose permutation spans the shards.
CLOUD_CASES: dict[str, dict] = {
    "vanilla": {"mode": "vanilla"},
    "full": {"mode": "full"},
    "matched/paper": {
        "mode": "constant",
        "constant_std": 0.1,
        "constant_classes": "matched",
        "spread": "paper",
    },
    "shuffled": {"mode": "shuffled"},
}


def cloud_rank(rank: int, world_size: int):
    return {case: cloud_state(rank, world_size, case) for case in CLOUD_CASES}


def cloud_state(rank: int, world_size: int, case: str):
    shard = ClassShard(CLASSES, rank, world_size)
    cloud = FeatureCloud(COUNTS, DIM, shard=shard, seed=4, **CLOUD, **CLOUD_CASES[case]).double()
    for features, labels, ids in batches():
        cloud.observe(features, labels, ids)
    memory = cloud.memory
    variance = cloud.cloud_variance()
    labels = torch.arange(CLASSES)
    return {
        "centres": cloud.centres,
        "written": memory.written,
        "stored": [memory.stored(i) for i in range(shard.size)],
        "mean": memory.mean,
        "variance": memory.variance,
        "cloud_variance": variance,
        "sample_variance": cloud.sample_variance(labels, variance),
        "permutation": cloud.permutation,
        "head_statistics": cloud.head_statistics(),
        "by_group": cloud.angular_variance_by_group(),
        "without": cloud.classes_without_statistics(),
        "unmeasurable": cloud.unmeasurable_classes,
    }


def test_the_sharded_cloud_holds_the_slices_of_the_one_process_cloud():
    by_world = at_world_sizes(cloud_rank)
    for case in CLOUD_CASES:
        whole = by_world[1][0][case]
        assert bool((whole["cloud_variance"] > 0).any())  # the case exercises real clouds
        for rank, result in enumerate(r[case] for r in by_world[WORLD]):
            shard = ClassShard(CLASSES, rank, WORLD)
            mine = slice(shard.start, shard.stop)
            assert torch.equal(result["centres"], whole["centres"][mine])
            assert torch.equal(result["written"], whole["written"][mine])
            for i, stored in enumerate(result["stored"]):
                assert torch.equal(stored, whole["stored"][shard.start + i])
            for name in ("mean", "variance"):
                torch.testing.assert_close(result[name], whole[name][mine], equal_nan=True)
            torch.testing.assert_close(
                result["cloud_variance"], whole["cloud_variance"][mine], rtol=1e-12, atol=0
            )
            torch.testing.assert_close(
                result["sample_variance"], whole["sample_variance"], rtol=1e-12, atol=0
            )
            assert torch.equal(result["permutation"], whole["permutation"])
            for name in ("head_statistics", "by_group"):
                assert result[name] == pytest.approx(whole[name], rel=1e-12)
            assert result["without"] == whole["without"]
            assert result["unmeasurable"] == whole["unmeasurable"]
    assert by_world[1][0]["shuffled"]["permutation"].tolist() != list(range(CLASSES))


#: The criterion's cases: two readings of the offsets, and one with every class-size term
#: on (label smoothing, class-balanced weights from epoch 1, logit adjustment; the spec
#: refuses the last two together, the criterion composes them) and LDAM's margins.
CRITERION_CASES = ["per_sample", "target_only", "per_sample+balance"]


def criterion_rank(rank: int, world_size: int):
    return {case: criterion_run(rank, world_size, case) for case in CRITERION_CASES}


def criterion_run(rank: int, world_size: int, case: str):
    offset, _, balanced = case.partition("+")
    shard = ClassShard(CLASSES, rank, world_size)
    weight = torch.randn(
        CLASSES, DIM, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    head = HEADS["cosface"](DIM, shard.size, scale=10.0, margin=0.35).double()
    with torch.no_grad():
        head.weight.copy_(weight[shard.start : shard.stop])
    cloud = FeatureCloud(
        COUNTS, DIM, shard=shard, seed=3, mode="vanilla", offset=offset, **CLOUD
    ).double()
    balance = None
    if balanced:
        margins = ldam_margins(COUNTS, 0.35)
        head.set_class_margins(margins[shard.start : shard.stop])
        balance = ClassBalance(COUNTS, shard, 0.1, 0.99, 1, 0.7)
    criterion = LEAPLoss(head, cloud, cloud_start_epoch=1, shard=shard, balance=balance)
    losses, grads, fractions = [], [], []
    per_rank = PER_RANK * WORLD // world_size
    mine = slice(rank * per_rank, (rank + 1) * per_rank)
    for step, (features, labels, ids) in enumerate(batches()):
        x = features[mine].clone().requires_grad_()
        loss = criterion(x, labels[mine], epoch=0 if step < 3 else 1, sample_ids=ids[mine])
        loss.backward()
        losses.append(loss.detach())
        grads.append(x.grad)
        fractions.append(criterion.figures()["cloud_fraction"])
    return {"losses": losses, "x_grads": grads, "w_grad": head.weight.grad, "fraction": fractions}


def test_the_criterion_gives_the_same_step_at_world_sizes_1_and_2():
    # One offset per sample is drawn with the same seed on every rank, so the sharded run
    # draws exactly the one-process criterion's numbers: the whole step must agree.
    by_world = at_world_sizes(criterion_rank)
    for case in CRITERION_CASES:
        whole = by_world[1][0][case]
        assert all(f > 0 for f in whole["fraction"][3:])  # the cloud is on from step 3
        results = [r[case] for r in by_world[WORLD]]
        for step, loss in enumerate(whole["losses"]):
            for rank, result in enumerate(results):
                torch.testing.assert_close(result["losses"][step], loss, rtol=0, atol=1e-12)
                torch.testing.assert_close(
                    result["x_grads"][step],
                    whole["x_grads"][step][rank * PER_RANK : (rank + 1) * PER_RANK],
                    rtol=0,
                    atol=1e-12,
                )
                assert result["fraction"][step] == whole["fraction"][step]
        torch.testing.assert_close(
            torch.cat([r["w_grad"] for r in results]), whole["w_grad"], rtol=0, atol=1e-12
        )


def test_a_shard_splits_classes_contiguously_and_evenly():
    assert ClassShard(11, 0, 2).bounds() == [(0, 6), (6, 11)]
    assert [ClassShard(10, r, 4).size for r in range(4)] == [3, 3, 2, 2]
    assert ClassShard(7).bounds() == [(0, 7)]  # one process: one shard of every class
    with pytest.raises(ValueError, match="world_size 5 exceeds num_classes 4"):
        ClassShard(4, 0, 5)
    with pytest.raises(ValueError, match=r"rank must be in \[0, 2\), got 2"):
        ClassShard(4, 2, 2)


def test_at_world_size_one_the_collectives_return_their_input():
    shard = ClassShard(5)
    tensor = torch.arange(5.0)
    for collective in (
        shard.sum,
        shard.max,
        shard.gather_batch,
        shard.gather_labels,
        shard.gather_classes,
        shard.gather_to_main,
    ):
        assert collective(tensor) is tensor
    assert shard.gather_objects({"a": 1}) == [{"a": 1}]
    positions, columns = ClassShard(11, 1, 2).owned(torch.tensor([0, 6, 10, 5, 7]))
    assert positions.tolist() == [1, 2, 4] and columns.tolist() == [0, 4, 1]
