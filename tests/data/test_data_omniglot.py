"""Omniglot from the shared copy as an identity-disjoint retrieval set (skipped when absent)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from leap_core.data import (
    DatasetError,
    ImageDataset,
    default_omniglot_root,
    face_test_transform,
    load_image,
    omniglot_available,
    read_omniglot,
    reid_long_tail,
)
from leap_core.data.omniglot import OMNIGLOT_ENV

needs_omniglot = pytest.mark.skipif(
    not omniglot_available(), reason=f"Omniglot copy not found at {default_omniglot_root()}"
)


@needs_omniglot
def test_full_listing() -> None:
    listing = read_omniglot()
    assert len(listing.train) == 964 * 20
    assert len(listing.query) == 659 and len(listing.gallery) == 659 * 19
    assert {r.pid for r in listing.train} == set(range(1, 965))
    assert {r.pid for r in listing.query} == set(range(965, 1624))
    assert Counter(r.pid for r in listing.gallery) == dict.fromkeys(range(965, 1624), 19)
    assert {r.camid for r in listing.train} == set(range(20))
    # evaluation row r uses drawer r % 20 as its query
    assert [(r.pid, r.camid) for r in listing.query[:3]] == [(965, 0), (966, 1), (967, 2)]
    assert listing.query[21].camid == 1


@needs_omniglot
def test_subset_and_several_queries() -> None:
    listing = read_omniglot(queries_per_class=3, max_train_classes=5, max_test_classes=2)
    assert len(listing.train) == 100
    assert [(r.pid, r.camid) for r in listing.query] == [
        (965, 0),
        (965, 1),
        (965, 2),
        (966, 1),
        (966, 2),
        (966, 3),
    ]
    assert len(listing.gallery) == 34
    with pytest.raises(DatasetError, match="queries_per_class must be in \\[1, 19\\], got 20"):
        read_omniglot(queries_per_class=20)


@needs_omniglot
def test_images_match_the_arrays() -> None:
    root = default_omniglot_root()
    with np.load(root / "images_evaluation.npz") as data:
        expected = data["images"][1, 3]
    listing = read_omniglot(max_train_classes=2, max_test_classes=2)
    record = next(r for r in listing.gallery if r.pid == 966 and r.camid == 3)
    pixels = np.asarray(load_image(record.path))
    assert pixels.shape == (105, 105, 3)
    assert np.array_equal(pixels[..., 0] == 255, expected)
    dataset = ImageDataset(listing.train, face_test_transform(16))
    image, target, camid = dataset[21]
    assert image.shape == (3, 16, 16) and (target, camid) == (2, 1)


@needs_omniglot
def test_long_tail_needs_random_heads() -> None:
    listing = read_omniglot(max_train_classes=50, max_test_classes=1)
    by_count = reid_long_tail(listing.train, head=5, tail_samples=3)
    assert by_count.pids[:5] == (1, 2, 3, 4, 5) and by_count.head_labels == [0, 1, 2, 3, 4]
    random = reid_long_tail(listing.train, head=5, tail_samples=3, head_selection="random", seed=1)
    assert sum(random.head) == 5 and random.head_labels != [0, 1, 2, 3, 4]
    assert sorted(set(random.class_counts)) == [3, 20]


def test_missing_copy_is_an_error_not_a_crash(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(OMNIGLOT_ENV, str(tmp_path))
    assert default_omniglot_root() == tmp_path
    assert not omniglot_available()
    with pytest.raises(DatasetError, match=r"images_background\.npz: Omniglot file not found"):
        read_omniglot()
