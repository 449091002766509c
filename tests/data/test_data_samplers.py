"""P×K, class-aware and random samplers: structure, determinism per (seed, epoch), sharding."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from leap_core.data import ClassAwareSampler, DatasetError, PKSampler, RandomSampler

# class c has LABEL_COUNTS[c] samples; class 3 has fewer than K=4 samples
LABEL_COUNTS = [9, 6, 4, 2, 5, 8, 4, 3]
LABELS = np.repeat(np.arange(len(LABEL_COUNTS)), LABEL_COUNTS)
rng = np.random.default_rng(0)
LABELS = LABELS[rng.permutation(len(LABELS))]  # interleaved, as in a real listing


def test_pk_batches_have_p_identities_times_k() -> None:
    sampler = PKSampler(LABELS, identities=3, instances=4, seed=1)
    indices = sampler.indices()
    assert sampler.batch_size == 12
    assert indices.size % 12 == 0 and indices.size > 0
    for batch in indices.reshape(-1, 12):
        labels = LABELS[batch]
        chunks = labels.reshape(3, 4)
        assert all(len(set(chunk)) == 1 for chunk in chunks)
        assert len(set(chunks[:, 0])) == 3
    # chunks: ceil(n / 4) per class = 3, 2, 1, 1, 2, 2, 1, 1 = 13 chunks; 4 batches use 12
    assert indices.size == 4 * 12


def test_pk_small_identities_are_filled_with_replacement() -> None:
    labels = np.array([0, 0, 1, 2, 2, 2])
    sampler = PKSampler(labels, identities=3, instances=4, seed=0)
    batch = sampler.indices()
    assert batch.size == 12
    counts = Counter(labels[batch].tolist())
    assert counts == {0: 4, 1: 4, 2: 4}
    assert set(batch[labels[batch] == 1].tolist()) == {2}
    assert set(batch[labels[batch] == 0].tolist()) == {0, 1}


def test_pk_every_image_appears_when_chunks_divide() -> None:
    labels = np.repeat(np.arange(6), 4)  # each class exactly one chunk of 4
    indices = PKSampler(labels, identities=2, instances=4, seed=3).indices()
    assert sorted(indices.tolist()) == list(range(24))


SAMPLERS = [
    lambda **kw: PKSampler(LABELS, identities=2, instances=4, **kw),
    lambda **kw: ClassAwareSampler(LABELS, **kw),
    lambda **kw: RandomSampler(len(LABELS), **kw),
]


@pytest.mark.parametrize("make", SAMPLERS)
def test_deterministic_per_seed_and_epoch(make) -> None:
    a, b = make(seed=5), make(seed=5)
    for epoch in (0, 3):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        assert a.indices().tolist() == b.indices().tolist()
        assert list(a) == a.indices().tolist()
    a.set_epoch(0)
    first = a.indices().tolist()
    a.set_epoch(1)
    assert a.indices().tolist() != first
    assert make(seed=6).indices().tolist() != first


@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_random_shards_are_disjoint_and_cover(world_size: int) -> None:
    n = 12
    shards = [
        RandomSampler(n, seed=2, rank=r, world_size=world_size).indices() for r in range(world_size)
    ]
    assert [len(s) for s in shards] == [n // world_size] * world_size
    assert sorted(np.concatenate(shards).tolist()) == list(range(n))


def test_random_shards_pad_or_drop() -> None:
    padded = [RandomSampler(10, seed=0, rank=r, world_size=4) for r in range(4)]
    assert [len(s) for s in padded] == [3, 3, 3, 3]
    union = np.concatenate([s.indices() for s in padded])
    assert set(union.tolist()) == set(range(10)) and len(union) == 12
    dropped = [RandomSampler(10, seed=0, rank=r, world_size=4, drop_last=True) for r in range(4)]
    union = np.concatenate([s.indices() for s in dropped])
    assert [len(s) for s in dropped] == [2, 2, 2, 2] and len(set(union.tolist())) == 8


def test_pk_shards_split_whole_batches() -> None:
    single = PKSampler(LABELS, identities=2, instances=4, seed=9).indices().reshape(-1, 8)
    shards = [
        PKSampler(LABELS, identities=2, instances=4, seed=9, rank=r, world_size=2)
        .indices()
        .reshape(-1, 8)
        for r in range(2)
    ]
    assert len(single) % 2 == 0  # 13 chunks, 2 per batch: 6 batches
    assert shards[0].tolist() == single[0::2].tolist()
    assert shards[1].tolist() == single[1::2].tolist()


def test_class_aware_is_balanced_over_classes() -> None:
    sampler = ClassAwareSampler(LABELS, num_samples=16000, seed=0)
    counts = np.bincount(LABELS[sampler.indices()], minlength=len(LABEL_COUNTS))
    assert counts.sum() == 16000
    assert np.all(np.abs(counts - 2000) < 200)  # ~4.5 standard deviations
    within = Counter(sampler.indices()[LABELS[sampler.indices()] == 3].tolist())
    assert set(within) == set(np.flatnonzero(LABELS == 3).tolist())
    assert len(ClassAwareSampler(LABELS, seed=0)) == len(LABELS)


def test_class_aware_shards_cover_the_global_draw() -> None:
    whole = ClassAwareSampler(LABELS, num_samples=40, seed=4).indices()
    parts = [
        ClassAwareSampler(LABELS, num_samples=40, seed=4, rank=r, world_size=4).indices()
        for r in range(4)
    ]
    for rank, part in enumerate(parts):
        assert part.tolist() == whole[rank::4].tolist()


def test_with_a_data_loader() -> None:
    dataset = TensorDataset(torch.as_tensor(LABELS))
    sampler = PKSampler(LABELS, identities=2, instances=4, seed=0)
    loader = DataLoader(dataset, batch_size=sampler.batch_size, sampler=sampler)
    batches = [b[0] for b in loader]
    assert len(batches) == 6
    assert all(len(torch.unique(b)) == 2 for b in batches)


def test_bad_arguments() -> None:
    with pytest.raises(DatasetError, match="identities \\(P\\) must be at most the 8 classes"):
        PKSampler(LABELS, identities=9, instances=2)
    with pytest.raises(DatasetError, match="instances must be an integer >= 1, got 0"):
        PKSampler(LABELS, identities=2, instances=0)
    with pytest.raises(DatasetError, match="rank must be below world_size \\(2\\), got 2"):
        RandomSampler(5, rank=2, world_size=2)
    with pytest.raises(DatasetError, match="labels must be >= 0, got -1"):
        ClassAwareSampler([0, -1])
    with pytest.raises(DatasetError, match="epoch must be an integer >= 0"):
        RandomSampler(5).set_epoch(-1)


@pytest.mark.parametrize("make", SAMPLERS)
def test_resume_at_starts_one_iteration_where_an_interrupted_epoch_stopped(make) -> None:
    sampler = make()
    sampler.set_epoch(3)
    whole = list(sampler)
    sampler.resume_at(8)
    assert list(sampler) == whole[8:]  # through a loader the batches from the third on
    assert len(sampler) == len(whole)  # the epoch's length stays the whole epoch's
    assert list(sampler) == whole  # only the next iteration skips
    sampler.resume_at(8)
    loader = DataLoader(
        TensorDataset(torch.arange(1000)), batch_size=4, sampler=sampler, drop_last=True
    )
    batches = [batch.tolist() for (batch,) in loader]
    assert batches[0] == whole[8:12]
    with pytest.raises(DatasetError, match="position"):
        sampler.resume_at(-1)
