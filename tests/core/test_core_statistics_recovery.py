"""The angle statistics recover a known head/tail spread through the real samplers.

Stationary features (a fixed vector per image) of 20 head classes × 20 images and 150 tail
classes × 3 images, the tail spread narrower than the head's, are fed batch by batch for 16
epochs through the project's own samplers into :class:`FeatureCloud`. The truth is what the
memories should hold if every centre were exact: for each class, the unbiased variance of the
angles between its images and the mean direction of its own images (computed here with numpy,
as the end-of- run diagnostics compute it on real embeddings). The statistic LEAP consumes is
the ratio of mean tail variance to mean head variance.

With the default centre update (the centre-loss reading of eq. 4) the ratio must come back
within ±25 % for P×K and for random batches. The literal reading overstates the ratio with
P×K batches and collapses the stored angles with random ones; the spec refuses it with random
and class-aware batches (where the centre lands on the single feature of most classes).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from leap_core.config import SpecError, parse_spec
from leap_core.data.samplers import PKSampler, RandomSampler
from leap_core.leap import FeatureCloud

HEADS, TAILS, HEAD_IMAGES, TAIL_IMAGES, DIM, BATCH, EPOCHS = 20, 150, 20, 3, 16, 64, 16


def stationary_features(seed: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Unit features around a random direction per class; the tail spread is 0.5 / 0.8 of the
    head's, and each image's distance from the centre varies (so angles have a variance)."""
    rng = np.random.default_rng(seed)
    counts = [HEAD_IMAGES] * HEADS + [TAIL_IMAGES] * TAILS
    labels = np.repeat(np.arange(len(counts)), counts)
    directions = rng.normal(size=(len(counts), DIM))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    spread = np.where(np.arange(len(counts)) < HEADS, 0.8, 0.5)
    scale = rng.uniform(0.3, 1.7, size=(len(labels), 1))
    features = directions[labels] + spread[labels, None] * scale * rng.normal(
        size=(len(labels), DIM)
    ) / np.sqrt(DIM)
    return features / np.linalg.norm(features, axis=1, keepdims=True), labels, counts


def true_ratio(features: np.ndarray, labels: np.ndarray, counts: list[int]) -> float:
    variances = []
    for c in range(len(counts)):
        mine = features[labels == c]
        centre = mine.mean(axis=0)
        angles = np.arccos(np.clip(mine @ (centre / np.linalg.norm(centre)), -1.0, 1.0))
        variances.append(angles.var(ddof=1))
    variances = np.asarray(variances)
    return float(variances[HEADS:].mean() / variances[:HEADS].mean())


def fed_cloud(
    features: np.ndarray,
    labels: np.ndarray,
    counts: list[int],
    sampler: str,
    seed: int,
    **cloud_options,
) -> FeatureCloud:
    """A cloud that has seen every batch of ``EPOCHS`` epochs of the sampler."""
    cloud = FeatureCloud(counts, DIM, mode="full", **cloud_options)
    assert cloud.is_head.sum().item() == HEADS  # the median split: K_i > 3
    order = (
        PKSampler(labels.tolist(), identities=16, instances=4, seed=seed)
        if sampler == "pk"
        else RandomSampler(len(labels), seed=seed)
    )
    features_t = torch.tensor(features, dtype=torch.float32)
    labels_t = torch.tensor(labels)
    for epoch in range(EPOCHS):
        order.set_epoch(epoch)
        indices = torch.tensor(order.indices())
        for start in range(0, len(indices) - BATCH + 1, BATCH):
            batch = indices[start : start + BATCH]
            cloud.update(features_t[batch], labels_t[batch])
    return cloud


def recovered_ratio(*args, **cloud_options) -> float:
    head, tail = fed_cloud(*args, **cloud_options).angular_variance_by_group()
    return tail / head


def true_tail_mean_angle(features: np.ndarray, labels: np.ndarray, counts: list[int]) -> float:
    means = []
    for c in range(HEADS, len(counts)):
        mine = features[labels == c]
        centre = mine.mean(axis=0)
        means.append(np.arccos(np.clip(mine @ (centre / np.linalg.norm(centre)), -1, 1)).mean())
    return float(np.mean(means))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("sampler", ["pk", "random"])
def test_default_update_recovers_the_tail_head_ratio(sampler, seed):
    features, labels, counts = stationary_features(seed)
    truth = true_ratio(features, labels, counts)
    assert 0.05 < truth < 0.5  # the tail is clearly narrower than the head
    recovered = recovered_ratio(features, labels, counts, sampler, seed)
    assert recovered == pytest.approx(truth, rel=0.25)


def test_literal_update_overstates_the_ratio_with_pk_batches():
    """Measured: P×K (K = 4 of a head class's 20 images) fits head centres to four samples
    and overstates the tail/head ratio about 2.7×."""
    features, labels, counts = stationary_features(0)
    truth = true_ratio(features, labels, counts)
    recovered = recovered_ratio(features, labels, counts, "pk", 0, center_update="literal")
    assert 2.0 < recovered / truth < 4.0


def test_literal_update_collapses_the_stored_angles_with_random_batches():
    """Random batches hold most classes once, so the literal eq. 4 puts the centre at 0.9 of
    the one feature: the tail classes' stored angles shrink to about a quarter of the truth,
    where the default reading keeps them within 10 %."""
    features, labels, counts = stationary_features(0)
    truth = true_tail_mean_angle(features, labels, counts)

    def stored(**options) -> float:
        cloud = fed_cloud(features, labels, counts, "random", 0, **options)
        return float(cloud.memory.mean[HEADS:].mean())

    assert stored(center_update="literal") < 0.5 * truth
    assert stored() == pytest.approx(truth, rel=0.1)


@pytest.mark.parametrize("sampler", ["random", "class_aware"])
def test_spec_refuses_the_literal_update_where_it_cannot_recover_the_ratio(sampler):
    with pytest.raises(
        SpecError,
        match=(
            f"method.leap.center_update 'literal' cannot be used "
            f"with train.sampler.kind '{sampler}'"
        ),
    ):
        parse_spec(
            {
                "method": {
                    "leap": {"mode": "full", "center_update": "literal", "cloud_start_epoch": 1}
                },
                "train": {"epochs": 5, "sampler": {"kind": sampler, "batch_size": 64}},
            }
        )
    # The default reading and P×K batches are accepted.
    parse_spec(
        {
            "method": {"leap": {"mode": "full", "cloud_start_epoch": 1}},
            "train": {"epochs": 5, "sampler": {"kind": sampler, "batch_size": 64}},
        }
    )
    parse_spec(
        {
            "method": {
                "leap": {"mode": "full", "center_update": "literal", "cloud_start_epoch": 1}
            },
            "train": {"epochs": 5},
        }
    )
