"""Reader for the LFW verification protocol (``pairs.txt`` and ``pairsDevTest.txt``).

The header says how the pairs are grouped: ``10\t300`` means 10 folds, each of 300 matched
lines (``name i j``) followed by 300 mismatched lines (``name1 i name2 j``); a single number
``500`` (the ``pairsDevTest.txt`` form) means one fold of 500 matched then 500 mismatched.
Image ``i`` of ``Name`` is ``root/Name/Name_000i.jpg``. Every referenced image must exist:
a missing one raises ``DatasetError`` naming the pairs file, the line and the path, because a
verification accuracy over a silently shortened list is not comparable to published numbers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from leap_core.data.records import DatasetError


class VerificationPair(NamedTuple):
    """Two image paths, whether they show the same person, and the fold (0-based)."""

    first: str
    second: str
    same: bool
    fold: int


@dataclass(frozen=True)
class VerificationPairs:
    """All pairs of a protocol file, in file order."""

    pairs: tuple[VerificationPair, ...]
    num_folds: int
    pairs_per_fold: int
    """Matched pairs per fold; each fold holds as many mismatched pairs."""

    def paths(self) -> list[str]:
        """Every distinct image path, sorted: what a feature extractor has to embed."""
        return sorted({p for pair in self.pairs for p in (pair.first, pair.second)})


def lfw_image_path(root: Path, name: str, index: str) -> str:
    """``root/Name/Name_NNNN.jpg`` for image number ``index`` (1-based, as in the pairs file)."""
    return str(root / name / f"{name}_{int(index):04d}.jpg")


def _parse_header(pairs_file: Path, line: str) -> tuple[int, int]:
    fields = line.split()
    if not fields or len(fields) > 2 or not all(f.isdigit() and int(f) > 0 for f in fields):
        raise DatasetError(
            f"{pairs_file} line 1: header must be 'folds pairs' or 'pairs', got {line.strip()!r}"
        )
    return (1, int(fields[0])) if len(fields) == 1 else (int(fields[0]), int(fields[1]))


def read_lfw_pairs(
    root: str | os.PathLike[str], pairs_file: str | os.PathLike[str]
) -> VerificationPairs:
    """Read a pairs file against the image tree ``root/<Name>/<Name>_NNNN.jpg``."""
    base = Path(root)
    source = Path(pairs_file)
    if not base.is_dir():
        raise DatasetError(f"root: {base} is not a directory")
    if not source.is_file():
        raise DatasetError(f"pairs_file: {source} does not exist")
    lines = [line for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise DatasetError(f"{source}: empty pairs file")
    folds, per_fold = _parse_header(source, lines[0])
    expected = folds * 2 * per_fold
    if len(lines) - 1 != expected:
        raise DatasetError(
            f"{source}: header announces {folds} folds x {2 * per_fold} pairs = {expected} "
            f"lines, got {len(lines) - 1}"
        )
    exists: dict[str, bool] = {}
    pairs: list[VerificationPair] = []
    for offset, line in enumerate(lines[1:]):
        number = offset + 2
        fold, position = divmod(offset, 2 * per_fold)
        same = position < per_fold
        fields = line.split()
        shape_ok = len(fields) == (3 if same else 4)
        indices = fields[1:3] if same else fields[1:4:2]
        if not shape_ok or not all(i.isdigit() for i in indices):
            form = "name i j (matched)" if same else "name1 i name2 j (mismatched)"
            raise DatasetError(f"{source} line {number}: expected '{form}', got {line.strip()!r}")
        if same:
            first = lfw_image_path(base, fields[0], fields[1])
            second = lfw_image_path(base, fields[0], fields[2])
        else:
            first = lfw_image_path(base, fields[0], fields[1])
            second = lfw_image_path(base, fields[2], fields[3])
        for path in (first, second):
            if path not in exists:
                exists[path] = os.path.isfile(path)
            if not exists[path]:
                raise DatasetError(f"{source} line {number}: missing image {path}")
        pairs.append(VerificationPair(first, second, same, fold))
    return VerificationPairs(tuple(pairs), folds, per_fold)
