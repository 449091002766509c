"""Identity-folder reader: training folders, seeded held-out identities, explicit splits."""

from __future__ import annotations

from pathlib import Path

import pytest

from leap_core.data import DatasetError, read_folders

TREE = {
    "alice": ["a1.jpg", "a2.jpg", "a3.jpg"],
    "bob": ["b1.png"],
    "carol": ["c1.jpg", "c2.jpg"],
    "dave": ["d1.jpg", "d2.jpg", "d3.jpg", "d4.jpg"],
}


def write_tree(root: Path, make_files, tree: dict[str, list[str]] = TREE) -> None:
    make_files(root, [f"{name}/{image}" for name, images in tree.items() for image in images])


def test_every_identity_trains_without_holdout(tmp_path: Path, make_files) -> None:
    write_tree(tmp_path, make_files)
    make_files(tmp_path, ["alice/notes.txt", "README.md"])
    (tmp_path / "empty").mkdir()
    listing = read_folders(tmp_path)
    assert listing.names == {0: "alice", 1: "bob", 2: "carol", 3: "dave"}
    assert [(Path(r.path).name, r.pid, r.camid) for r in listing.train] == [
        ("a1.jpg", 0, 0),
        ("a2.jpg", 0, 0),
        ("a3.jpg", 0, 0),
        ("b1.png", 1, 0),
        ("c1.jpg", 2, 0),
        ("c2.jpg", 2, 0),
        ("d1.jpg", 3, 0),
        ("d2.jpg", 3, 0),
        ("d3.jpg", 3, 0),
        ("d4.jpg", 3, 0),
    ]
    assert listing.query == [] and listing.gallery == []
    assert listing.skipped == {"train": {"non_image": 2, "empty_identity": 1}}


def test_holdout_is_seeded_and_splits_query_gallery(tmp_path: Path, make_files) -> None:
    write_tree(tmp_path, make_files)
    first = read_folders(tmp_path, holdout=2, seed=3)
    assert first == read_folders(tmp_path, holdout=2, seed=3)
    held = {r.pid for r in first.query}
    assert len(held) == 2 and 1 not in held  # bob has one image: never held out
    assert held.isdisjoint({r.pid for r in first.train})
    assert {r.pid for r in first.gallery} == held
    for pid in held:
        name = first.names[pid]
        images = sorted(TREE[name])
        assert [Path(r.path).name for r in first.query if r.pid == pid] == images[:1]
        assert [Path(r.path).name for r in first.gallery if r.pid == pid] == images[1:]
    assert {r.camid for r in first.query} == {0} and {r.camid for r in first.gallery} == {1}
    assert len(first.train) + len(first.query) + len(first.gallery) == 10
    seeds = {
        frozenset(r.pid for r in read_folders(tmp_path, holdout=1, seed=s).query) for s in range(20)
    }
    assert seeds == {frozenset({0}), frozenset({2}), frozenset({3})}


def test_explicit_split_folders(tmp_path: Path, make_files) -> None:
    make_files(
        tmp_path,
        [
            "train/x/1.jpg",
            "train/y/1.jpg",
            "train/y/2.jpg",
            "query/z/1.jpg",
            "gallery/z/2.jpg",
            "gallery/z/3.jpg",
            "gallery/w/1.jpg",
        ],
    )
    listing = read_folders(tmp_path)
    assert listing.names == {0: "w", 1: "x", 2: "y", 3: "z"}
    assert [(r.pid, r.camid) for r in listing.train] == [(1, 0), (2, 0), (2, 0)]
    assert [(r.pid, r.camid) for r in listing.query] == [(3, 0)]
    assert [(r.pid, r.camid) for r in listing.gallery] == [(0, 1), (3, 1), (3, 1)]
    with pytest.raises(DatasetError, match=r"holdout: .* already has train/query/gallery"):
        read_folders(tmp_path, holdout=1)


def test_bad_holdout(tmp_path: Path, make_files) -> None:
    write_tree(tmp_path, make_files)
    with pytest.raises(
        DatasetError,
        match="holdout must be below the 4 identities and at most "
        "the 3 with more than 1 images, got 4",
    ):
        read_folders(tmp_path, holdout=4)
    with pytest.raises(DatasetError, match="holdout must be >= 0, got -1"):
        read_folders(tmp_path, holdout=-1)
    with pytest.raises(DatasetError, match="holds no identity folder"):
        read_folders(tmp_path / "alice")
