"""The ``train`` task: thin, like a web view. It takes only the job id; everything else is
read from the job row, so a redelivered message is harmless."""

from __future__ import annotations

import os
import signal
from typing import Any

from billiard.process import current_process

# Imported in the parent process so that every forked child starts with torch and MLflow
# loaded: the time from dispatch to the first step is then setup, not imports.
import leap_core.tracking.mlflow_hook
from jobs.broker import TRAIN_TASK
from leap_core.training.preemption import preempt_on_sigterm, sigterm_received
from worker.app import app
from worker.runner import run_job

import leap_core.training.trainer  # noqa: F401  isort: skip


@app.task(name=TRAIN_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def train(self: Any, job_id: str) -> str:
    """Run job ``job_id`` if it still needs running; returns what happened."""
    # Host name and process id: prefork children of one worker share the host name, and
    # the lease must tell them apart.
    # For the whole task, not only while it trains: a SIGTERM while the job is leased or
    # its end recorded is kept (and stops the run at its first step), never fatal.
    with preempt_on_sigterm():
        outcome = run_job(job_id, worker=f"{self.request.hostname or 'worker'}:{os.getpid()}")
    if sigterm_received() and current_process().name == "MainProcess":
        # A solo pool's job runs in the worker's own process, whose SIGTERM it took from
        # Celery's handler: hand it back, so the worker shuts down as it was told to.
        os.kill(os.getpid(), signal.SIGTERM)
    return outcome
