"""Reader for MSMT17 (V1 and V2), which lists its splits in text files.

``list_train.txt``, ``list_val.txt``, ``list_query.txt`` and ``list_gallery.txt`` hold lines
``relative/path pid``. Train and val paths are relative to ``train/`` (V1) or
``mask_train_v2/`` (V2); query and gallery paths to ``test/`` or ``mask_test_v2/``. The camera
is the third field of the file name (``0000_000_01_0303morning_0015_0.jpg`` is camera 01,
stored 0-based). As in common practice the validation list is merged into training unless
``include_val=False``; MSMT17 pids are 0-based, so pid 0 is an ordinary identity here.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from leap_core.data.records import DatasetError, Record, SplitListing, format_bad_names

MSMT_NAME = re.compile(r"^\d+_\d+_(\d+)_")
"""Leading fields of an MSMT17 image name: pid, index, camera."""

TRAIN_DIRS: tuple[str, ...] = ("train", "mask_train_v2")
TEST_DIRS: tuple[str, ...] = ("test", "mask_test_v2")


def _image_dir(base: Path, candidates: tuple[str, ...]) -> Path:
    for name in candidates:
        if (base / name).is_dir():
            return base / name
    raise DatasetError(f"{base}: missing split folder, expected one of {list(candidates)}")


def _read_list(
    listing: SplitListing, split: str, list_file: Path, image_dir: Path, skip_bad: bool
) -> list[Record]:
    """Parse one list file; bad lines raise or, with ``skip_bad``, are counted."""
    if not list_file.is_file():
        raise DatasetError(f"{list_file}: missing list file for split {split!r}")
    records: list[Record] = []
    bad: list[str] = []
    prefix = str(image_dir) + os.sep
    with list_file.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            parsed = MSMT_NAME.match(os.path.basename(fields[0])) if len(fields) == 2 else None
            if parsed is None or not fields[1].lstrip("-").isdigit() or int(fields[1]) < 0:
                bad.append(f"line {number}: {line.strip()}")
                continue
            cam = int(parsed.group(1))
            if cam < 1:
                bad.append(f"line {number}: {line.strip()}")
                continue
            records.append(Record(prefix + fields[0], int(fields[1]), cam - 1))
    if bad:
        if not skip_bad:
            raise DatasetError(format_bad_names("lines that do not parse", str(list_file), bad))
        listing.count_skipped(split, "bad_line", len(bad))
    return records


def read_msmt17(
    root: str | os.PathLike[str], *, include_val: bool = True, skip_bad: bool = False
) -> SplitListing:
    """Index MSMT17 V1 or V2 from its list files (the version is detected from the folders)."""
    base = Path(root)
    if not base.is_dir():
        raise DatasetError(f"root: {base} is not a directory")
    listing = SplitListing(name="msmt17")
    train_dir = _image_dir(base, TRAIN_DIRS)
    test_dir = _image_dir(base, TEST_DIRS)
    train = _read_list(listing, "train", base / "list_train.txt", train_dir, skip_bad)
    if include_val:
        train += _read_list(listing, "train", base / "list_val.txt", train_dir, skip_bad)
    listing.train = sorted(set(train))
    listing.count_skipped("train", "duplicate", len(train) - len(listing.train))
    listing.query = _read_list(listing, "query", base / "list_query.txt", test_dir, skip_bad)
    listing.gallery = _read_list(listing, "gallery", base / "list_gallery.txt", test_dir, skip_bad)
    return listing
