"""Long-tailed training sets cut from a balanced or natural listing (spec §7).

- ``reid_long_tail`` (``<H h, S s>``): rank identities by image count, ties by pid; the top
  ``h`` are head and keep all images; every other identity keeps ``s`` images drawn at random.
- ``face_long_tail`` (``<H h, T t>``): the top ``h`` are head; the next ``t`` are tail with
  ``tail_samples`` (default 5) random images each; the rest are left out.
- ``exponential_long_tail``: the CIFAR-LT profile for custom data; the class of rank ``r`` of
  ``C`` keeps ``floor(n_max · imbalance^(-r/(C-1)))`` images (at least 1); a class is head
  when it keeps more than ``head_threshold`` images (the vanilla rule ``K_i > T`` of spec §5).
- ``full_training_set``: no cut; every class is head. For the full-data baselines.

A tail identity with fewer images than asked keeps what it has; ``stats["short_tail_ids"]``
counts them. ``head_selection="random"`` draws the head identities with the seed instead of
by count, which balanced data such as Omniglot needs (every class has the same count there).
Randomness uses ``numpy.random.default_rng([seed, stream])`` with one stream for choosing
identities and one for choosing images, visited in pid order, so results depend only on the
input listing and the seed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from leap_core.data.manifest import LongTailManifest
from leap_core.data.records import DatasetError, Record, SplitListing, listing_hash

if TYPE_CHECKING:
    from leap_core.config import DatasetSpec

HeadSelection = Literal["count", "random"]
_SELECT_STREAM = 1
_SAMPLE_STREAM = 2


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise DatasetError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _group(records: Sequence[Record]) -> dict[int, list[Record]]:
    """Records per pid, pids ascending, each identity's records in path order."""
    if not records:
        raise DatasetError("records: the training listing is empty")
    groups: dict[int, list[Record]] = defaultdict(list)
    for record in records:
        groups[record.pid].append(record)
    return {pid: sorted(groups[pid]) for pid in sorted(groups)}


def _order(groups: dict[int, list[Record]], selection: HeadSelection, seed: int) -> list[int]:
    """Identities in the order heads are taken: by count (ties by pid) or seeded at random."""
    if selection == "count":
        return sorted(groups, key=lambda pid: (-len(groups[pid]), pid))
    if selection == "random":
        rng = np.random.default_rng([seed, _SELECT_STREAM])
        return [int(p) for p in rng.permutation(np.array(sorted(groups), dtype=np.int64))]
    raise DatasetError(f"head_selection must be 'count' or 'random', got {selection!r}")


def _build(
    records: Sequence[Record],
    groups: dict[int, list[Record]],
    keep: dict[int, int | None],
    heads: set[int],
    profile: dict[str, Any],
    seed: int,
    asked: int | None,
) -> LongTailManifest:
    """Sample ``keep[pid]`` images (``None`` = all) per kept pid and assemble the manifest."""
    rng = np.random.default_rng([seed, _SAMPLE_STREAM])
    pids = sorted(keep)
    chosen: list[Record] = []
    labels: list[int] = []
    counts: list[int] = []
    short = 0
    for label, pid in enumerate(pids):
        images = groups[pid]
        wanted = keep[pid]
        if wanted is not None and asked is not None and pid not in heads and len(images) < asked:
            short += 1
        if wanted is not None and wanted < len(images):
            picks = np.sort(rng.choice(len(images), size=wanted, replace=False))
            images = [images[int(i)] for i in picks]
        chosen += images
        labels += [label] * len(images)
        counts.append(len(images))
    head_flags = tuple(pid in heads for pid in pids)
    head_images = sum(c for c, h in zip(counts, head_flags, strict=True) if h)
    stats = {
        "input_ids": len(groups),
        "input_images": len(records),
        "head_ids": sum(head_flags),
        "tail_ids": len(pids) - sum(head_flags),
        "head_images": head_images,
        "tail_images": len(chosen) - head_images,
        "dropped_ids": len(groups) - len(pids),
        "dropped_images": len(records) - len(chosen),
        "short_tail_ids": short,
    }
    return LongTailManifest(
        profile=profile,
        seed=seed,
        source_hash=listing_hash(records),
        pids=tuple(pids),
        class_counts=tuple(counts),
        head=head_flags,
        records=tuple(chosen),
        labels=tuple(labels),
        stats=stats,
    )


def _rank_heads(
    records: Sequence[Record], head: object, seed: object, selection: HeadSelection
) -> tuple[dict[int, list[Record]], list[int], set[int]]:
    """Group by identity, rank the identities and take the first ``head`` as head classes,
    refusing a head that leaves no tail."""
    head = _check_int("head", head, 0)
    seed = _check_int("seed", seed, 0)
    groups = _group(records)
    if head >= len(groups):
        raise DatasetError(
            f"head must be below the number of training identities ({len(groups)}) so the "
            f"tail is not empty, got {head}"
        )
    order = _order(groups, selection, seed)
    return groups, order, set(order[:head])


def reid_long_tail(
    records: Sequence[Record],
    *,
    head: int,
    tail_samples: int = 5,
    seed: int = 0,
    head_selection: HeadSelection = "count",
) -> LongTailManifest:
    """Cut ``<H head, S tail_samples>``: head identities keep all images, the rest keep S."""
    tail_samples = _check_int("tail_samples", tail_samples, 1)
    groups, _, heads = _rank_heads(records, head, seed, head_selection)
    keep: dict[int, int | None] = {pid: (None if pid in heads else tail_samples) for pid in groups}
    profile = {
        "kind": "reid",
        "head": head,
        "tail_samples": tail_samples,
        "head_selection": head_selection,
    }
    return _build(records, groups, keep, heads, profile, seed, tail_samples)


def face_long_tail(
    records: Sequence[Record],
    *,
    head: int,
    tail_classes: int,
    tail_samples: int = 5,
    seed: int = 0,
    head_selection: HeadSelection = "count",
) -> LongTailManifest:
    """Cut ``<H head, T tail_classes>``: the next T identities keep ``tail_samples`` images."""
    tail_classes = _check_int("tail_classes", tail_classes, 1)
    tail_samples = _check_int("tail_samples", tail_samples, 1)
    groups, order, heads = _rank_heads(records, head, seed, head_selection)
    if head + tail_classes > len(groups):
        raise DatasetError(
            f"tail_classes: head ({head}) + tail_classes ({tail_classes}) exceeds the "
            f"{len(groups)} training identities"
        )
    keep: dict[int, int | None] = {pid: None for pid in heads}
    keep.update({pid: tail_samples for pid in order[head : head + tail_classes]})
    profile = {
        "kind": "face",
        "head": head,
        "tail_classes": tail_classes,
        "tail_samples": tail_samples,
        "head_selection": head_selection,
    }
    return _build(records, groups, keep, heads, profile, seed, tail_samples)


def exponential_long_tail(
    records: Sequence[Record],
    *,
    imbalance_factor: float,
    seed: int = 0,
    head_threshold: int = 20,
    max_images: int | None = None,
    head_selection: HeadSelection = "count",
) -> LongTailManifest:
    """CIFAR-LT style profile: counts decay exponentially from ``n_max`` to ``n_max/imbalance``.

    ``n_max`` is the largest class count, or ``max_images`` if smaller. Ranks follow
    ``head_selection`` (by count with ties by pid, or seeded at random for balanced data).
    """
    if (
        isinstance(imbalance_factor, bool)
        or not isinstance(imbalance_factor, int | float)
        or not np.isfinite(imbalance_factor)
        or imbalance_factor < 1
    ):
        raise DatasetError(
            f"imbalance_factor must be a finite number >= 1, got {imbalance_factor!r}"
        )
    head_threshold = _check_int("head_threshold", head_threshold, 0)
    seed = _check_int("seed", seed, 0)
    groups = _group(records)
    order = _order(groups, head_selection, seed)
    n_max = len(groups[order[0]]) if head_selection == "count" else max(map(len, groups.values()))
    if max_images is not None:
        n_max = min(n_max, _check_int("max_images", max_images, 1))
    last = max(len(order) - 1, 1)
    keep: dict[int, int | None] = {}
    for rank, pid in enumerate(order):
        target = max(1, int(np.floor(n_max * float(imbalance_factor) ** (-rank / last) + 1e-9)))
        keep[pid] = min(target, len(groups[pid]))
    heads = {pid for pid, kept in keep.items() if kept is not None and kept > head_threshold}
    if len(heads) == len(groups):
        raise DatasetError(
            f"head_threshold: every class keeps more than {head_threshold} images, so the tail "
            "is empty"
        )
    profile = {
        "kind": "exponential",
        "imbalance_factor": float(imbalance_factor),
        "head_threshold": head_threshold,
        "max_images": max_images,
        "head_selection": head_selection,
    }
    return _build(records, groups, keep, heads, profile, seed, None)


def full_training_set(records: Sequence[Record], *, seed: int = 0) -> LongTailManifest:
    """Every identity with all its images, all marked head: the full-data baseline."""
    seed = _check_int("seed", seed, 0)
    groups = _group(records)
    keep: dict[int, int | None] = dict.fromkeys(groups)
    profile = {"kind": "full"}
    return _build(records, groups, keep, set(groups), profile, seed, None)


def cut_long_tail(records: Sequence[Record], kind: str, **params: Any) -> LongTailManifest:
    """Dispatch on ``kind`` (``reid``, ``face``, ``exponential``, ``full``), as in a job spec's
    ``long_tail: {kind: reid, head: 20, tail_samples: 5, seed: 0}``."""
    builders: dict[str, Callable[..., LongTailManifest]] = {
        "reid": reid_long_tail,
        "face": face_long_tail,
        "exponential": exponential_long_tail,
        "full": full_training_set,
    }
    builder = builders.get(kind)
    if builder is None:
        raise DatasetError(f"kind must be one of {sorted(builders)}, got {kind!r}")
    try:
        return builder(records, **params)
    except TypeError as error:
        raise DatasetError(f"long_tail: bad parameters for kind {kind!r} ({error})") from None


def cut_for(spec: DatasetSpec, listing: SplitListing) -> LongTailManifest:
    """Cut the training split as ``spec.long_tail`` says (spec §7)."""
    records = listing.split("train")
    tail = spec.long_tail
    common: dict[str, Any] = {"seed": tail.seed, "head_selection": tail.head_selection}
    # LongTailSpec's validator guarantees the fields each kind needs.
    if tail.kind == "reid":
        assert tail.head is not None
        return reid_long_tail(records, head=tail.head, tail_samples=tail.tail_samples, **common)
    if tail.kind == "face":
        assert tail.head is not None and tail.tail_classes is not None
        return face_long_tail(
            records,
            head=tail.head,
            tail_classes=tail.tail_classes,
            tail_samples=tail.tail_samples,
            **common,
        )
    if tail.kind == "exponential":
        assert tail.imbalance_factor is not None
        return exponential_long_tail(
            records,
            imbalance_factor=tail.imbalance_factor,
            head_threshold=tail.head_threshold,
            **common,
        )
    if spec.format == "synthetic":
        # The generator already cut the tail; re-deriving it marks head and tail classes.
        synth = spec.synthetic
        return reid_long_tail(
            records, head=synth.head, tail_samples=synth.tail_cap(), seed=tail.seed
        )
    return full_training_set(records, seed=tail.seed)
