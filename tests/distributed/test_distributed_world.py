"""Leaving the process group at the end of a run, on two real gloo ranks."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from torch import nn

from leap_core.training.world import leave_process_group
from tests.ranks import run_ranks

pytestmark = pytest.mark.process


def wrapped_in_a_cycle_then_left(rank: int, world_size: int) -> tuple[bool, bool]:
    """A DistributedDataParallel model that only a reference cycle still holds (as a trainer
    held by an exception's traceback, or by hooks pointing back at it), with the automatic
    collector off so that only leaving can free it."""
    gc.disable()
    try:
        model = nn.parallel.DistributedDataParallel(nn.Linear(4, 2))
        model(torch.ones(3, 4)).sum().backward()
        holder: dict[str, object] = {"model": model}
        holder["holder"] = holder
        alive = weakref.ref(model)
        del model, holder
        before = alive() is not None
        leave_process_group()
        return before, alive() is None
    finally:
        gc.enable()


def test_leaving_frees_a_wrapped_model_that_only_a_cycle_holds_before_the_group_goes():
    # Before leaving, the cycle keeps the model (and its reducer's hold on the group); once
    # left, it is gone on every rank, so nothing tears the group down at interpreter exit.
    assert run_ranks(2, wrapped_in_a_cycle_then_left) == [(True, True), (True, True)]
