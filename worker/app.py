"""The Celery application (``celery -A worker.app worker``; ``python -m worker`` picks the
pool and concurrency from the visible GPUs).

Long jobs need: acknowledging a message only after the task ends (``acks_late``) and
requeueing it when the worker process dies (``task_reject_on_worker_lost``), so no job is
lost; fetching one message at a time (prefetch 1), so a busy worker does not hoard jobs.
"""

from __future__ import annotations

from celery import Celery

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
