"""One entry point that reads any supported layout by name (used by the CLI and job specs).

:data:`READERS` is the one table of dataset formats: the spec's ``dataset.format``, the
``leap data inspect --format`` choices and :func:`read_dataset` all come from it, so a new
layout is one entry here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from leap_core.data.records import DatasetError, SplitListing

if TYPE_CHECKING:
    from leap_core.config import DatasetSpec


@dataclass(frozen=True)
class ReadOptions:
    """What some layouts take: ``skip_bad`` for the name-parsing ones, ``holdout`` and
    ``seed`` for identity folders."""

    skip_bad: bool = False
    holdout: int = 0
    seed: int = 0


@dataclass(frozen=True)
class Format:
    """How to read one layout; ``needs_root`` is False when it has a default copy."""

    read: Callable[[Path | None, ReadOptions], SplitListing]
    needs_root: bool = True


def _given(root: Path | None) -> Path:
    if root is None:  # read_dataset refuses this first; a direct call gets the same error
        raise DatasetError("root is required for this format")
    return root


# The readers are imported when a dataset is read, not with this table: the spec (and so
# the API and the command line) needs the names only.


def _market1501(root: Path | None, o: ReadOptions) -> SplitListing:
    from leap_core.data.market1501 import read_market1501

    return read_market1501(_given(root), skip_bad=o.skip_bad)


def _dukemtmc(root: Path | None, o: ReadOptions) -> SplitListing:
    from leap_core.data.market1501 import read_dukemtmc

    return read_dukemtmc(_given(root), skip_bad=o.skip_bad)


def _msmt17(root: Path | None, o: ReadOptions) -> SplitListing:
    from leap_core.data.msmt17 import read_msmt17

    return read_msmt17(_given(root), skip_bad=o.skip_bad)


def _folders(root: Path | None, o: ReadOptions) -> SplitListing:
    from leap_core.data.folders import read_folders

    return read_folders(_given(root), holdout=o.holdout, seed=o.seed)


def _omniglot(root: Path | None, o: ReadOptions) -> SplitListing:
    from leap_core.data.omniglot import read_omniglot

    return read_omniglot(root)


def _recordio(root: Path | None, o: ReadOptions) -> SplitListing:
    from leap_core.data.recordio import read_recordio

    given = _given(root)
    return read_recordio(given / "train.rec" if given.is_dir() else given)


#: ``dataset.format`` → how to read it.
READERS: dict[str, Format] = {
    "market1501": Format(_market1501),
    "dukemtmc": Format(_dukemtmc),
    "msmt17": Format(_msmt17),
    "folders": Format(_folders),
    "omniglot": Format(_omniglot, needs_root=False),
    "recordio": Format(_recordio),
}
FORMATS: tuple[str, ...] = tuple(READERS)


def read_dataset(
    format: str,
    root: str | os.PathLike[str] | None,
    *,
    skip_bad: bool = False,
    holdout: int = 0,
    seed: int = 0,
) -> SplitListing:
    """Read ``root`` as ``format`` (one of ``FORMATS``).

    ``root`` may be omitted only for Omniglot (the shared copy is then used). For RecordIO,
    ``root`` is the ``.rec`` file or a folder holding ``train.rec``. ``skip_bad`` applies to the
    name-parsing layouts, ``holdout`` and ``seed`` to identity folders.
    """
    layout = READERS.get(format)
    if layout is None:
        raise DatasetError(f"format must be one of {list(FORMATS)}, got {format!r}")
    if root is None and layout.needs_root:
        raise DatasetError(f"root is required for format {format!r}")
    options = ReadOptions(skip_bad=skip_bad, holdout=holdout, seed=seed)
    return layout.read(Path(root) if root is not None else None, options)


def read_listing(
    spec: DatasetSpec, progress: Callable[[int, int], None] | None = None
) -> SplitListing:
    """All splits of the dataset named by ``spec``."""
    if spec.format == "synthetic":
        from leap_core.data.synthetic_cache import ensure_synthetic  # the generator: on use

        return read_dataset("market1501", ensure_synthetic(spec, progress))
    return read_dataset(
        spec.format,
        spec.root,
        skip_bad=spec.skip_bad,
        holdout=spec.holdout,
        seed=spec.long_tail.seed,
    )
