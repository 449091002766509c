"""Sending a job id to the workers' queue.

The API only produces messages, so it builds a bare Celery app on the shared broker and
sends the task by name: it never imports the worker (nor torch). Messages are sent only
after the job row is committed, so a worker never looks for a row that is not there yet.
"""

from __future__ import annotations

from functools import lru_cache

from celery import Celery

from jobs.broker import TRAIN_TASK, broker_options
from jobs.models import Job
from jobs.settings import Settings


@lru_cache(maxsize=4)
def producer(broker_url: str, settings_json: str) -> Celery:
    settings = Settings.model_validate_json(settings_json)
    app = Celery("leap-api", broker=broker_url, set_as_current=False)
    app.conf.update(broker_transport_options=broker_options(settings),
                    broker_connection_retry_on_startup=True, task_ignore_result=True,
                    broker_pool_limit=50)
    return app


def celery_priority(priority: int) -> int:
    """Job priority 0-9, higher first; Celery on Redis treats 0 as the highest."""
    return 9 - max(0, min(9, priority))


def dispatch(settings: Settings, job: Job) -> None:
    app = producer(settings.broker_url, settings.model_dump_json())
    app.send_task(TRAIN_TASK, args=[job.id], queue=settings.queue,
                  priority=celery_priority(job.priority))


def broker_reachable(settings: Settings) -> bool:
    app = producer(settings.broker_url, settings.model_dump_json())
    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
        return True
    except Exception:
        return False
