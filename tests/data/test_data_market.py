"""Market-1501 and DukeMTMC-reID readers on hand-written trees."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from leap_core.data import DatasetError, Record, read_dukemtmc, read_market1501

MARKET_FILES = [
    "bounding_box_train/0002_c1s1_000451_03.jpg",
    "bounding_box_train/0002_c2s1_000301_01.jpg",
    "bounding_box_train/0007_c3s3_015518_02.jpg",
    "bounding_box_train/0010_c6s4_002427_04.jpg",
    "bounding_box_train/Thumbs.db",
    "query/0001_c1s1_001051_00.jpg",
    "query/0003_c4s6_015641_00.jpg",
    "query/0000_c2s1_000001_00.jpg",  # a distractor pid outside the gallery: skipped
    "bounding_box_test/0001_c2s1_000301_02.jpg",
    "bounding_box_test/0001_c5s1_001426_01.jpg",
    "bounding_box_test/0003_c1s6_000211_03.jpg",
    "bounding_box_test/0000_c3s1_000551_06.jpg",
    "bounding_box_test/-1_c1s1_000401_03.jpg",
    "bounding_box_test/-1_c6s1_000526_05.jpg",
    "gt_bbox/ignored.jpg",
]


def test_market_records_pids_cameras_and_counts(tmp_path: Path, make_files) -> None:
    make_files(tmp_path, MARKET_FILES)
    listing = read_market1501(tmp_path)
    train_dir = str(tmp_path / "bounding_box_train")
    assert listing.train == [
        Record(f"{train_dir}/0002_c1s1_000451_03.jpg", 2, 0),
        Record(f"{train_dir}/0002_c2s1_000301_01.jpg", 2, 1),
        Record(f"{train_dir}/0007_c3s3_015518_02.jpg", 7, 2),
        Record(f"{train_dir}/0010_c6s4_002427_04.jpg", 10, 5),
    ]
    assert [(r.pid, r.camid) for r in listing.query] == [(1, 0), (3, 3)]
    assert sorted((r.pid, r.camid) for r in listing.gallery) == [(0, 2), (1, 1), (1, 4), (3, 0)]
    assert listing.skipped == {
        "train": {"non_image": 1},
        "query": {"distractor": 1},
        "gallery": {"junk": 2},
    }


def test_duke_names(tmp_path: Path, make_files) -> None:
    make_files(
        tmp_path,
        [
            "bounding_box_train/0001_c2_f0046182.jpg",
            "bounding_box_train/0001_c6_f0030823.jpg",
            "bounding_box_train/0005_c1_f0000100.jpg",
            "query/0005_c2_f0044157.jpg",
            "bounding_box_test/0005_c8_f0045951.jpg",
            "bounding_box_test/0019_c3_f0012345.jpg",
        ],
    )
    listing = read_dukemtmc(tmp_path)
    assert [(r.pid, r.camid) for r in listing.train] == [(1, 1), (1, 5), (5, 0)]
    assert [(r.pid, r.camid) for r in listing.query] == [(5, 1)]
    assert [(r.pid, r.camid) for r in listing.gallery] == [(5, 7), (19, 2)]
    assert listing.skipped == {}


def test_market_names_do_not_parse_as_duke(tmp_path: Path, make_files) -> None:
    make_files(tmp_path, [n for n in MARKET_FILES if n.endswith(".jpg")])
    with pytest.raises(DatasetError, match="bounding_box_train: 4 file names that do not parse"):
        read_dukemtmc(tmp_path)


def test_missing_split_folder_names_it(tmp_path: Path, make_files) -> None:
    make_files(tmp_path, ["bounding_box_train/0002_c1s1_000451_03.jpg", "query/x.txt"])
    with pytest.raises(DatasetError, match=r"bounding_box_test: missing split folder"):
        read_market1501(tmp_path)


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"root: .*nowhere is not a directory"):
        read_market1501(tmp_path / "nowhere")


def test_bad_names_show_first_five_and_count_the_rest(tmp_path: Path, make_files) -> None:
    bad = [f"bounding_box_train/bad_{i:02d}.jpg" for i in range(8)]
    make_files(tmp_path, [*MARKET_FILES, *bad, "query/0001_c0s1_000001_00.jpg"])
    with pytest.raises(DatasetError) as caught:
        read_market1501(tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert "8 file names that do not parse" in message
    assert "'bad_00.jpg', 'bad_01.jpg', 'bad_02.jpg', 'bad_03.jpg', 'bad_04.jpg'" in message
    assert "'bad_05.jpg'" not in message
    assert message.endswith("and 3 more (use skip_bad / --skip-bad to skip them)")


def test_skip_bad_counts_them(tmp_path: Path, make_files) -> None:
    bad = [f"bounding_box_train/bad_{i:02d}.jpg" for i in range(8)]
    # camera 0 does not exist (cameras are 1-based in the names)
    make_files(tmp_path, [*MARKET_FILES, *bad, "query/0001_c0s1_000001_00.jpg"])
    listing = read_market1501(tmp_path, skip_bad=True)
    assert len(listing.train) == 4
    assert len(listing.query) == 2
    assert listing.skipped["train"] == {"bad_name": 8, "non_image": 1}
    assert listing.skipped["query"] == {"bad_name": 1, "distractor": 1}


def test_records_are_sorted_and_deterministic(tmp_path: Path, make_files) -> None:
    make_files(tmp_path, MARKET_FILES)
    first = read_market1501(tmp_path)
    second = read_market1501(tmp_path)
    assert first == second
    assert first.train == sorted(first.train)
    assert all(re.search(r"\.jpg$", r.path) for r in first.gallery)
