"""A validation split carved out of the training identities, for choosing hyper-parameters.

Tuning on the test identities would make the test numbers optimistic. A sweep with a
``validation:`` section instead holds out some training identities (picked at random with a
fixed seed, so every cell and seed validates on the same identities), trains on the rest
(the long-tail cut then applies to what remains) and retrieves among the held-out ones.

Query / gallery rule, for held-out identity number ``j`` (in the random order) with its
images sorted by (camera, path): the images at positions ``(j + i) % n`` for
``i < queries_per_identity`` are queries, the rest gallery. Rotating the start spreads the
queries over cameras (drawers, for Omniglot), as the Omniglot reader does for its test set.
The re-ID protocol ignores same-camera gallery matches, so an identity needs images from at
least two cameras to give a valid query.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from leap_core.data import Record, SplitListing
from leap_core.sweeps.sweepfile import SweepError, ValidationSplit


def holdout_listing(listing: SplitListing, split: ValidationSplit) -> SplitListing:
    """A listing whose train split lacks the held-out identities and whose query and gallery
    are made of them; the dataset's own test splits are dropped."""
    by_pid: dict[int, list[Record]] = defaultdict(list)
    for record in listing.split("train"):
        by_pid[record.pid].append(record)
    pids = sorted(by_pid)
    if split.identities >= len(pids):
        raise SweepError(
            f"validation.identities: must be below the {len(pids)} training "
            f"identities, got {split.identities}"
        )
    chosen = np.random.default_rng(split.seed).permutation(len(pids))[: split.identities]
    held = [pids[i] for i in chosen]
    held_set = set(held)
    result = SplitListing(name=f"{listing.name}-validation", names=dict(listing.names))
    result.train = [r for r in listing.split("train") if r.pid not in held_set]
    for order, pid in enumerate(held):
        images = sorted(by_pid[pid], key=lambda r: (r.camid, r.path))
        if len(images) <= split.queries_per_identity:
            raise SweepError(
                f"validation.queries_per_identity: identity {pid} has only "
                f"{len(images)} images, need more than "
                f"{split.queries_per_identity}"
            )
        queries = {(order + i) % len(images) for i in range(split.queries_per_identity)}
        for position, record in enumerate(images):
            (result.query if position in queries else result.gallery).append(record)
    return result
