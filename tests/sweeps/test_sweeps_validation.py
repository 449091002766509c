"""The validation split carved out of the training identities."""

from __future__ import annotations

import pytest

from leap_core.data import Record, SplitListing
from leap_core.sweeps.sweepfile import SweepError, ValidationSplit
from leap_core.sweeps.validation import holdout_listing


def listing() -> SplitListing:
    """10 identities of 4 images, one per camera 0..3; a test split that must be dropped."""
    result = SplitListing(name="toy")
    result.train = [Record(f"p{pid}c{cam}.jpg", pid, cam) for pid in range(10) for cam in range(4)]
    result.query = [Record("q.jpg", 99, 0)]
    result.gallery = [Record("g.jpg", 99, 1)]
    return result


def test_held_out_identities_leave_training_and_form_query_and_gallery() -> None:
    split = ValidationSplit(identities=3, seed=5)
    result = holdout_listing(listing(), split)
    held = {r.pid for r in result.query}
    assert len(held) == 3
    assert {r.pid for r in result.gallery} == held
    assert held.isdisjoint({r.pid for r in result.train})
    assert len(result.train) == 7 * 4
    assert len(result.query) == 3 and len(result.gallery) == 3 * 3
    # Identity number j (in the random order) queries with its image at position j % 4,
    # i.e. camera j (images sorted by camera): queries rotate over cameras.
    assert sorted(r.camid for r in result.query) == [0, 1, 2]
    # The same seed picks the same identities, whatever seed the cell trains with.
    assert {r.pid for r in holdout_listing(listing(), split).query} == held
    assert {
        r.pid for r in holdout_listing(listing(), ValidationSplit(identities=3, seed=6)).query
    } != held


def test_two_queries_per_identity() -> None:
    result = holdout_listing(listing(), ValidationSplit(identities=2, queries_per_identity=2))
    assert len(result.query) == 4 and len(result.gallery) == 4


def test_bad_splits_name_the_field() -> None:
    with pytest.raises(
        SweepError,
        match=r"^validation.identities: must be below the 10 "
        r"training identities, got 10$",
    ):
        holdout_listing(listing(), ValidationSplit(identities=10))
    with pytest.raises(
        SweepError,
        match=r"^validation.queries_per_identity: identity \d has "
        r"only 4 images, need more than 4$",
    ):
        holdout_listing(listing(), ValidationSplit(identities=2, queries_per_identity=4))
