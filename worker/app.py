"""The Celery application (``celery -A worker.app worker``; ``python -m worker`` picks the
pool and concurrency from the visible GPUs).

Long jobs need: acknowledging a message only after the task ends (``acks_late``) and
requeueing it when the worker process dies (``task_reject_on_worker_lost``), so no job is
lost; fetching one message at a time (prefetch 1), so a busy worker does not hoard jobs.

A worker told to stop with SIGTERM (a node drained, a spot instance reclaimed: it will be
killed within its grace period) does not wait hours for its jobs: the signal is passed on to
its pool's processes, whose runs checkpoint at the next step boundary and go back to the
queue as preempted (:mod:`worker.outcome`), and the worker then exits as a warm shutdown
does. (With the solo pool the job runs in the worker's own process and sees the signal
itself.)
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

import billiard.process
from celery import Celery, signals

from jobs.broker import TRAIN_TASK, broker_options
from jobs.settings import get_settings

settings = get_settings()

app = Celery("leap", broker=settings.broker_url, include=["worker.tasks", "worker.gpu"])
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_default_queue=settings.queue,
    task_routes={TRAIN_TASK: {"queue": settings.queue}},
    broker_transport_options=broker_options(settings),
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_max_tasks_per_child=1,  # a fresh process per job: no memory or CUDA state leaks
)

logger = logging.getLogger(__name__)


@signals.worker_shutting_down.connect
def preempt_running_jobs(sig: str = "", how: str = "", **_: Any) -> None:
    """On a warm shutdown for SIGTERM, pass the signal on to the pool's processes: each
    running job checkpoints and is requeued as preempted."""
    if how != "Warm" or sig not in ("SIGTERM", "TERM"):
        return
    for child in billiard.process.active_children():
        if child.pid is not None:
            logger.warning("SIGTERM: preempting the job of pool process %d", child.pid)
            os.kill(child.pid, signal.SIGTERM)
