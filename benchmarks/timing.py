"""Step timing shared by the benchmarks: wall clock, or one thread's CPU time.

On a shared machine other processes stretch wall-clock times unevenly. ``--cpu-time`` runs
PyTorch on one intra-op thread and reads that thread's CPU time, which another process's
load barely changes, so side-by-side ratios stay stable. On CUDA the device is synchronised
around each step and the wall clock is used.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch


def add_timing_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="one thread, measured in thread CPU time (stable under load)",
    )


def make_timer(device: torch.device, cpu_time: bool) -> Callable[[Callable[[], None]], float]:
    """A function that runs a step and returns its duration in seconds."""
    if cpu_time:
        if device.type != "cpu":
            raise SystemExit("--cpu-time measures CPU runs only")
        torch.set_num_threads(1)
    clock = time.thread_time if cpu_time else time.perf_counter

    def timed(step: Callable[[], None]) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = clock()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return clock() - start

    return timed


def describe(cpu_time: bool) -> str:
    return f"{torch.get_num_threads()} thread(s), " + (
        "thread CPU time" if cpu_time else "wall clock"
    )
