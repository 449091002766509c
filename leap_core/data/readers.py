"""One entry point that reads any supported layout by name (used by the CLI and job specs)."""

from __future__ import annotations

import os
from pathlib import Path

from leap_core.data.folders import read_folders
from leap_core.data.market1501 import read_dukemtmc, read_market1501
from leap_core.data.msmt17 import read_msmt17
from leap_core.data.omniglot import read_omniglot
from leap_core.data.recordio import read_recordio
from leap_core.data.records import DatasetError, SplitListing

FORMATS: tuple[str, ...] = ("market1501", "dukemtmc", "msmt17", "folders", "omniglot", "recordio")


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
    if format not in FORMATS:
        raise DatasetError(f"format must be one of {list(FORMATS)}, got {format!r}")
    if root is None and format != "omniglot":
        raise DatasetError(f"root is required for format {format!r}")
    if format == "market1501":
        return read_market1501(root, skip_bad=skip_bad)  # type: ignore[arg-type]
    if format == "dukemtmc":
        return read_dukemtmc(root, skip_bad=skip_bad)  # type: ignore[arg-type]
    if format == "msmt17":
        return read_msmt17(root, skip_bad=skip_bad)  # type: ignore[arg-type]
    if format == "folders":
        return read_folders(root, holdout=holdout, seed=seed)  # type: ignore[arg-type]
    if format == "omniglot":
        return read_omniglot(root)
    rec = Path(root)  # type: ignore[arg-type]
    return read_recordio(rec / "train.rec" if rec.is_dir() else rec)
