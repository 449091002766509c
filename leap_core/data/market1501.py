"""Readers for the Market-1501 and DukeMTMC-reID folder layouts.

Both datasets ship three flat folders (``bounding_box_train``, ``query``, ``bounding_box_test``)
whose file names encode identity and camera. Indexing uses ``os.scandir`` and one compiled
regex per layout because a full tree has ~33,000 files and is re-read at every job start.

Rules, as in the official evaluation code:
- pid ``-1`` marks junk boxes: skipped everywhere and counted as ``junk``;
- pid ``0`` marks distractors: kept in the gallery, skipped (``distractor``) in train and query;
- camera ids are stored 0-based (``c1`` becomes 0);
- files that are not images (``Thumbs.db``) are counted as ``non_image``;
- image names that do not parse raise ``DatasetError`` unless ``skip_bad`` is set, in which
  case they are counted as ``bad_name``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from leap_core.data.records import DatasetError, Record, SplitListing, format_bad_names

MARKET_FOLDERS: dict[str, str] = {
    "train": "bounding_box_train",
    "query": "query",
    "gallery": "bounding_box_test",
}
"""Split name to folder name, shared by Market-1501 and DukeMTMC-reID."""

MARKET_NAME = re.compile(r"^(-1|\d+)_c(\d+)s\d+_\d+_\d+\.jpg$")
"""``0002_c1s1_000451_03.jpg``: pid, camera, sequence, frame, box index."""

DUKE_NAME = re.compile(r"^(-1|\d+)_c(\d+)_f\d+\.jpg$")
"""``0001_c2_f0046182.jpg``: pid, camera, frame."""

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp")


def _scan_split(
    listing: SplitListing,
    split: str,
    folder: Path,
    pattern: re.Pattern[str],
    skip_bad: bool,
) -> None:
    """Parse every file name in ``folder`` into ``listing``'s records for ``split``."""
    if not folder.is_dir():
        raise DatasetError(f"{folder}: missing split folder {folder.name!r} for split {split!r}")
    records: list[Record] = []
    bad: list[str] = []
    junk = distractors = non_image = 0
    prefix = str(folder) + os.sep
    match = pattern.match
    with os.scandir(folder) as entries:
        for entry in entries:
            name = entry.name
            parsed = match(name)
            if parsed is None:
                if name.lower().endswith(IMAGE_SUFFIXES) and entry.is_file():
                    bad.append(name)
                else:
                    non_image += 1
                continue
            pid = int(parsed.group(1))
            cam = int(parsed.group(2))
            if cam < 1:
                bad.append(name)
                continue
            if pid == -1:
                junk += 1
            elif pid == 0 and split != "gallery":
                distractors += 1
            else:
                records.append(Record(prefix + name, pid, cam - 1))
    if bad:
        bad.sort()
        if not skip_bad:
            raise DatasetError(format_bad_names("file names that do not parse", str(folder), bad))
        listing.count_skipped(split, "bad_name", len(bad))
    listing.count_skipped(split, "junk", junk)
    listing.count_skipped(split, "distractor", distractors)
    listing.count_skipped(split, "non_image", non_image)
    records.sort()
    setattr(listing, split, records)


def _read_layout(
    name: str, root: str | os.PathLike[str], pattern: re.Pattern[str], skip_bad: bool
) -> SplitListing:
    base = Path(root)
    if not base.is_dir():
        raise DatasetError(f"root: {base} is not a directory")
    listing = SplitListing(name=name)
    for split, folder in MARKET_FOLDERS.items():
        _scan_split(listing, split, base / folder, pattern, skip_bad)
    return listing


def read_market1501(root: str | os.PathLike[str], *, skip_bad: bool = False) -> SplitListing:
    """Index a Market-1501 tree (``root/bounding_box_train``, ``query``, ``bounding_box_test``)."""
    return _read_layout("market1501", root, MARKET_NAME, skip_bad)


def read_dukemtmc(root: str | os.PathLike[str], *, skip_bad: bool = False) -> SplitListing:
    """Index a DukeMTMC-reID tree; same folders as Market-1501, names ``0001_c2_f0046182.jpg``."""
    return _read_layout("dukemtmc", root, DUKE_NAME, skip_bad)
