"""Run a function on N real processes joined by torch.distributed (gloo), as torchrun would.

``run_ranks(2, fn, *args)`` spawns two processes, initialises the default process group in
each over a free loopback port, calls ``fn(rank, world_size, *args)`` (a module-level
function, so the spawned interpreters can import it), and returns every rank's result in rank
order. A rank that raises fails the call with that rank's traceback.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from leap_core.training.world import leave_process_group
from tests.ports import free_port


def _rank_main(
    rank: int, world_size: int, port: int, out: str, fn: Callable[..., Any], args: tuple
) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    try:
        torch.save(fn(rank, world_size, *args), Path(out) / f"rank{rank}.pt")
    except BaseException:
        dist.destroy_process_group()  # its peers fail on their own; waiting could hang
        raise
    # Leave together, as a finished run does (the trainer ``fn`` made is garbage by now, and
    # is collected before the group goes: held until exit, gloo's threads can abort there).
    leave_process_group()


def run_ranks(world_size: int, fn: Callable[..., Any], *args: Any) -> list[Any]:
    with tempfile.TemporaryDirectory() as out:
        mp.spawn(_rank_main, args=(world_size, free_port(), out, fn, args), nprocs=world_size)
        return [
            torch.load(Path(out) / f"rank{rank}.pt", weights_only=False)
            for rank in range(world_size)
        ]
