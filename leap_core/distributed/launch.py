"""Start a Python module as several torch.distributed ranks on this machine.

torchrun's own launcher (``torch.distributed.launcher.elastic_launch``: the c10d rendezvous
on a free local port, as ``torchrun --standalone`` does) starts the ranks as
``python -m <module> ...`` and watches them. When one fails, the others are stopped and the
failure is reported in one line that names the rank and how it ended. ``leap train --nproc``
and the service's workers both launch through here.
"""

from __future__ import annotations

import signal
import sys
import threading
import uuid


class RankFailed(RuntimeError):
    """A rank of the run ended badly; the message names the first one to fail.
    ``exitcode`` is that rank's exit status (negative: the signal that ended it), or the
    negated signal that stopped the launcher itself."""

    def __init__(self, message: str, exitcode: int) -> None:
        super().__init__(message)
        self.exitcode = exitcode


def describe_exit(exitcode: int) -> str:
    """``"signal 9 (SIGKILL)"`` for a negative exit code, ``"status 1"`` otherwise."""
    if exitcode < 0:
        try:
            return f"signal {-exitcode} ({signal.Signals(-exitcode).name})"
        except ValueError:
            return f"signal {-exitcode}"
    return f"status {exitcode}"


def run_ranks(nproc: int, module: str, arguments: list[str]) -> None:
    """Run ``python -m <module> <arguments>`` as ``nproc`` ranks; raises
    :class:`RankFailed`."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=uuid.uuid4().hex,
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
    )
    # The launcher installs its own handlers for these signals and leaves them; a worker
    # process that launched a job must keep its own (a Celery warm shutdown, for one).
    handled = [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT]
    before = {number: signal.getsignal(number) for number in handled}
    try:
        elastic_launch(config, sys.executable)("-m", module, *arguments)
    except ChildFailedError as error:
        rank, failure = error.get_first_failure()
        raise RankFailed(
            f"rank {rank} exited with {describe_exit(failure.exitcode)}", failure.exitcode
        ) from None
    except SignalException as error:  # this process was told to stop; the ranks are down
        raise RankFailed(
            f"the launcher was stopped by {error.sigval.name}", -int(error.sigval)
        ) from None
    finally:
        if threading.current_thread() is threading.main_thread():
            for number, handler in before.items():
                signal.signal(number, handler)
