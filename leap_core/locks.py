"""A lock file beside something several processes may create at once.

Two workers (or two ``leap train`` runs) starting together on a fresh machine would both
find no tracking store or no generated dataset and both create it; creation is not safe to
race (MLflow's schema migration, a dataset moved into place over another). Whoever takes
the lock creates; the others wait, then find it made. ``flock`` locks belong to the open
file, so a process that dies releases its lock at once and nobody waits on a stale one.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class LockTimeout(TimeoutError):
    """The lock was held by another process for longer than the caller would wait."""


@contextmanager
def file_lock(path: Path, timeout: float = 3600.0, poll: float = 0.05) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the ``with`` block;
    wait at most ``timeout`` seconds for it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeout(
                        f"{path} is held by another process for more than {timeout:g} s"
                    ) from None
                time.sleep(poll)
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)
