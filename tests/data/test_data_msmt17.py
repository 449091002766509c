"""MSMT17 V1 / V2 list-file reader."""

from __future__ import annotations

from pathlib import Path

import pytest

from leap_core.data import DatasetError, Record, read_msmt17


def write_msmt(root: Path, train_dir: str, test_dir: str, lists: dict[str, list[str]]) -> None:
    (root / train_dir).mkdir(parents=True)
    (root / test_dir).mkdir(parents=True)
    for name, lines in lists.items():
        (root / f"list_{name}.txt").write_text("".join(f"{line}\n" for line in lines))


LISTS = {
    "train": [
        "0000/0000_000_01_0303morning_0015_0.jpg 0",
        "0000/0000_001_05_0303morning_0036_1.jpg 0",
        "0001/0001_000_15_0303noon_0100_0.jpg 1",
    ],
    "val": ["0002/0002_000_03_0303afternoon_0200_0.jpg 2"],
    "query": ["0000/0000_000_07_0303morning_0400_0.jpg 0"],
    "gallery": [
        "0000/0000_001_02_0303morning_0401_0.jpg 0",
        "0001/0001_003_12_0303noon_0500_1.jpg 1",
    ],
}


@pytest.mark.parametrize(
    ("train_dir", "test_dir"), [("train", "test"), ("mask_train_v2", "mask_test_v2")]
)
def test_msmt_v1_and_v2(tmp_path: Path, train_dir: str, test_dir: str) -> None:
    write_msmt(tmp_path, train_dir, test_dir, LISTS)
    listing = read_msmt17(tmp_path)
    base = str(tmp_path / train_dir)
    assert listing.train == [
        Record(f"{base}/0000/0000_000_01_0303morning_0015_0.jpg", 0, 0),
        Record(f"{base}/0000/0000_001_05_0303morning_0036_1.jpg", 0, 4),
        Record(f"{base}/0001/0001_000_15_0303noon_0100_0.jpg", 1, 14),
        Record(f"{base}/0002/0002_000_03_0303afternoon_0200_0.jpg", 2, 2),
    ]
    assert listing.query == [
        Record(f"{tmp_path / test_dir}/0000/0000_000_07_0303morning_0400_0.jpg", 0, 6)
    ]
    assert [(r.pid, r.camid) for r in listing.gallery] == [(0, 1), (1, 11)]
    assert listing.skipped == {}


def test_val_can_be_left_out(tmp_path: Path) -> None:
    write_msmt(tmp_path, "train", "test", LISTS)
    assert [r.pid for r in read_msmt17(tmp_path, include_val=False).train] == [0, 0, 1]


def test_bad_line_names_file_and_line(tmp_path: Path) -> None:
    lists = dict(LISTS, gallery=[*LISTS["gallery"], "0003/broken_name.jpg 3"])
    write_msmt(tmp_path, "train", "test", lists)
    with pytest.raises(
        DatasetError,
        match=r"list_gallery\.txt: 1 lines that do not parse: "
        r"'line 3: 0003/broken_name\.jpg 3'",
    ):
        read_msmt17(tmp_path)
    listing = read_msmt17(tmp_path, skip_bad=True)
    assert len(listing.gallery) == 2
    assert listing.skipped == {"gallery": {"bad_line": 1}}


def test_missing_list_and_folder(tmp_path: Path) -> None:
    lists = {k: v for k, v in LISTS.items() if k != "query"}
    write_msmt(tmp_path, "train", "test", lists)
    with pytest.raises(DatasetError, match=r"list_query\.txt: missing list file for split 'query'"):
        read_msmt17(tmp_path)
    other = tmp_path / "other"
    (other / "train").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"missing split folder, expected one of \['test'"):
        read_msmt17(other)
