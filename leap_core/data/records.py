"""The common currency of the data layer: image records and split listings.

Every reader, whatever the on-disk format, returns the same ``Record(path, pid, camid)`` tuples
grouped in a ``SplitListing``, so long-tail builders, samplers, datasets and the CLI never need
to know where the images came from. Images that are not plain files carry a scheme in their
path (``recordio:`` or ``omniglot:``, see ``datasets.load_image``), which keeps records small,
hashable and JSON-serialisable.
"""

from __future__ import annotations

import gc
import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NamedTuple

SPLITS: tuple[str, ...] = ("train", "query", "gallery")
"""Split names in the order readers, manifests and the CLI report them."""


class DatasetError(ValueError):
    """Bad dataset input: the message names the file or field and the offending value."""


class Record(NamedTuple):
    """One image: where it is, whose it is (``pid``) and which camera took it (0-based)."""

    path: str
    pid: int
    camid: int


@dataclass
class SplitListing:
    """The records of one dataset per split, with every skipped item counted by reason.

    ``skipped[split][reason]`` counts items that a reader left out on purpose (junk images,
    distractors outside the gallery, non-image files, unparsable names with ``skip_bad``), so a
    report can show that nothing was dropped silently.
    """

    name: str
    train: list[Record] = field(default_factory=list)
    query: list[Record] = field(default_factory=list)
    gallery: list[Record] = field(default_factory=list)
    skipped: dict[str, dict[str, int]] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)
    """Identity names by pid, for layouts where identities are named folders."""

    def split(self, name: str) -> list[Record]:
        """Return the records of split ``name`` (one of ``SPLITS``)."""
        if name not in SPLITS:
            raise DatasetError(f"split must be one of {list(SPLITS)}, got {name!r}")
        return getattr(self, name)

    def count_skipped(self, split: str, reason: str, count: int = 1) -> None:
        """Add ``count`` items skipped from ``split`` for ``reason``."""
        if count:
            reasons = self.skipped.setdefault(split, {})
            reasons[reason] = reasons.get(reason, 0) + count


def images_per_pid(records: Iterable[Record]) -> dict[int, int]:
    """Count images per identity, keys in ascending pid order."""
    counts = Counter(record.pid for record in records)
    return {pid: counts[pid] for pid in sorted(counts)}


def listing_hash(records: Sequence[Record]) -> str:
    """SHA-256 of a record listing, independent of its order.

    Stored in manifests so a manifest can be matched to the exact input it was cut from.
    """
    digest = hashlib.sha256()
    for record in sorted(records):
        digest.update(f"{record.path}\t{record.pid}\t{record.camid}\n".encode())
    return digest.hexdigest()


def format_bad_names(kind: str, where: str, bad: Sequence[str], shown: int = 5) -> str:
    """One-line message listing the first ``shown`` bad names and counting the rest."""
    head = ", ".join(repr(name) for name in bad[:shown])
    rest = len(bad) - shown
    more = f" and {rest} more" if rest > 0 else ""
    return f"{where}: {len(bad)} {kind}: {head}{more} (use skip_bad / --skip-bad to skip them)"


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many records.

    Records are tuples, which the collector tracks: building a million of them triggers
    repeated full collections that cost several times the construction itself.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
