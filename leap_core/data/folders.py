"""Reader for identity folders: ``root/<identity>/<images>``, the layout of face and custom data.

Two forms are accepted:

- ``root/<identity>/...``: every identity is for training, unless ``holdout`` > 0 identities
  are held out for retrieval. Held-out identities are drawn with ``seed`` among those with at
  least ``queries_per_id + 1`` images; of each, the first ``queries_per_id`` images in file-name
  order are queries and the rest gallery.
- ``root/train/<identity>``, ``root/query/<identity>``, ``root/gallery/<identity>``: explicit
  splits (detected when all three folders exist; ``holdout`` must then be 0).

Pids are the indices of the identity names in sorted order (over all splits, so a name keeps
its pid everywhere); ``SplitListing.names`` maps them back. Folders carry no camera, so train
and query records get camera 0 and gallery records camera 1: a re-ID evaluator that ignores
same-camera matches then keeps every gallery match of a query.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from leap_core.data.market1501 import IMAGE_SUFFIXES
from leap_core.data.records import SPLITS, DatasetError, Record, SplitListing

QUERY_CAMERA = 0
GALLERY_CAMERA = 1


def _scan_identities(listing: SplitListing, split: str, folder: Path) -> dict[str, list[str]]:
    """Map identity name to its sorted image paths; count everything else as skipped."""
    identities: dict[str, list[str]] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            if not entry.is_dir():
                listing.count_skipped(split, "non_image")
                continue
            images: list[str] = []
            prefix = entry.path + os.sep
            with os.scandir(entry.path) as files:
                for item in files:
                    if item.name.lower().endswith(IMAGE_SUFFIXES) and item.is_file():
                        images.append(prefix + item.name)
                    else:
                        listing.count_skipped(split, "non_image")
            if images:
                identities[entry.name] = sorted(images)
            else:
                listing.count_skipped(split, "empty_identity")
    return identities


def read_folders(
    root: str | os.PathLike[str],
    *,
    holdout: int = 0,
    queries_per_id: int = 1,
    seed: int = 0,
) -> SplitListing:
    """Index identity folders, optionally holding out ``holdout`` identities for retrieval."""
    base = Path(root)
    if not base.is_dir():
        raise DatasetError(f"root: {base} is not a directory")
    if holdout < 0:
        raise DatasetError(f"holdout must be >= 0, got {holdout}")
    if queries_per_id < 1:
        raise DatasetError(f"queries_per_id must be >= 1, got {queries_per_id}")
    listing = SplitListing(name="folders")
    if all((base / split).is_dir() for split in SPLITS):
        if holdout:
            raise DatasetError(
                f"holdout: {base} already has train/query/gallery folders, got holdout={holdout}"
            )
        per_split = {split: _scan_identities(listing, split, base / split) for split in SPLITS}
        names = sorted(set().union(*(found.keys() for found in per_split.values())))
        pid_of = {name: pid for pid, name in enumerate(names)}
        cameras = {"train": 0, "query": QUERY_CAMERA, "gallery": GALLERY_CAMERA}
        for split, found in per_split.items():
            records = [
                Record(path, pid_of[name], cameras[split])
                for name, paths in found.items()
                for path in paths
            ]
            setattr(listing, split, sorted(records, key=lambda r: (r.pid, r.path)))
        listing.names = dict(enumerate(names))
        return listing

    found = _scan_identities(listing, "train", base)
    if not found:
        raise DatasetError(f"root: {base} holds no identity folder with images")
    names = sorted(found)
    listing.names = dict(enumerate(names))
    held: set[int] = set()
    if holdout:
        eligible = [pid for pid, name in enumerate(names) if len(found[name]) > queries_per_id]
        if holdout >= len(names) or holdout > len(eligible):
            raise DatasetError(
                f"holdout must be below the {len(names)} identities and at most the "
                f"{len(eligible)} with more than {queries_per_id} images, got {holdout}"
            )
        rng = np.random.default_rng(seed)
        held = {int(pid) for pid in rng.choice(eligible, size=holdout, replace=False)}
    for pid, name in enumerate(names):
        paths = found[name]
        if pid in held:
            listing.query += [Record(p, pid, QUERY_CAMERA) for p in paths[:queries_per_id]]
            listing.gallery += [Record(p, pid, GALLERY_CAMERA) for p in paths[queries_per_id:]]
        else:
            listing.train += [Record(p, pid, 0) for p in paths]
    return listing
