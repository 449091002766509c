"""A SIGTERM as a preemption notice: the run checkpoints at the next step boundary and stops.

A spot instance, a drained node or a batch scheduler gives a process SIGTERM and some
seconds before it is killed. While :func:`preempt_on_sigterm` is active, that signal makes
the trainer write its checkpoint after the step it is in and raise
:class:`~leap_core.training.trainer.TrainingPreempted`, so the run loses at most one step.
A signal that comes while the run is still being set up (reading data, building the model)
is kept, and the trainer stops after its first step. Both ``leap train`` and the service's
workers run their trainer inside it; :func:`sigterm_received` tells a process afterwards
that it was asked to stop (a worker then stops too).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from leap_core.training.trainer import Trainer

#: The exit status of a process that checkpointed and stopped for a SIGTERM (128 + 15, what
#: a process killed by the signal reports, so schedulers read both alike).
PREEMPTED_EXIT = 128 + signal.SIGTERM

#: Whether a SIGTERM reached a notice of this process (the process was told to stop).
_received = False


def sigterm_received() -> bool:
    """Whether this process took a SIGTERM under :func:`preempt_on_sigterm`."""
    return _received


class PreemptionNotice:
    """Whether a SIGTERM came, passed on to the run's trainer once it has one."""

    def __init__(self) -> None:
        self.received = False
        self._trainer: Trainer | None = None

    def attach(self, trainer: Trainer) -> None:
        """The trainer to stop; one asked before it existed (here, or under an enclosing
        notice of the same process) is asked now."""
        self._trainer = trainer
        if self.received or _received:
            trainer.request_preemption()

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        global _received
        self.received = _received = True
        if self._trainer is not None:
            self._trainer.request_preemption()


@contextmanager
def preempt_on_sigterm() -> Iterator[PreemptionNotice]:
    """While active, SIGTERM asks the attached trainer to checkpoint and stop (the
    process's handler before it is back in place on exit). Outside the main thread, where
    Python cannot take signals, the notice never fires."""
    notice = PreemptionNotice()
    if threading.current_thread() is not threading.main_thread():
        yield notice
        return
    previous = signal.signal(signal.SIGTERM, notice)
    try:
        yield notice
    finally:
        signal.signal(signal.SIGTERM, previous)
