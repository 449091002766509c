"""What the train task does with a job id: lease the row (:mod:`worker.lease`), train,
record the outcome (:mod:`worker.outcome`).

Every failure of the run becomes a one-line reason on the row (:mod:`worker.faults`); the
worker process itself carries on to the next job. A job of several devices runs its ranks
as child processes (:mod:`worker.ranks`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from jobs.models import JobStatus
from jobs.paths import escapes
from jobs.settings import Settings, get_settings
from leap_core.config import JobSpec, SpecError, parse_spec
from worker.faults import missing_dataset_root
from worker.hooks import job_hooks
from worker.lease import Heartbeat, Lease, finish, lease
from worker.outcome import Outcome, record, record_failure, train
from worker.ranks import run_on_devices

logger = logging.getLogger(__name__)


def run_job(job_id: str, worker: str, settings: Settings | None = None) -> Outcome:
    """Train job ``job_id`` to its end; returns what the attempt left it as."""
    settings = settings or get_settings()
    held = lease(settings, job_id, worker)
    if held is None:
        return Outcome.skipped
    # Four beats per reaper timeout, so a job in a long setup or evaluation (no steps,
    # hence no progress writes) never looks dead; at most one every 10 s.
    every = min(10.0, max(0.5, settings.heartbeat_timeout() / 4))
    beat = Heartbeat(settings.database_url, held, every)
    beat.start()
    try:
        return _train(settings, held)
    finally:
        beat.stopped.set()


def _refusal(spec: JobSpec, settings: Settings) -> str | None:
    """Why this worker will not read the spec's data, or None. The API checked the paths
    at submission; a symlink can be re-pointed since, so they are resolved again here."""
    roots = settings.resolved_data_roots()
    found = escapes(spec.model_dump(mode="json"), roots)
    if found:
        return "; ".join(f"{escape.field} {escape.message(roots)}" for escape in found)
    root = missing_dataset_root(spec)
    if root is not None:
        return (
            f"dataset root {root} does not exist on this worker: it was removed or "
            f"unmounted after the job was submitted, or this worker does not mount it "
            f"(LEAP_DATA_ROOTS here: {', '.join(map(str, settings.resolved_data_roots()))})"
        )
    return None


def _train(settings: Settings, held: Lease) -> Outcome:
    try:
        spec = parse_spec(held.spec)
    except SpecError as error:  # a row the API accepted under other rules
        return record_failure(settings, held, str(error), infrastructure=False)
    refused = _refusal(spec, settings)
    if refused is not None:
        finish(settings, held, JobStatus.failed, refused, error=refused)
        return Outcome.failed
    if spec.resources.devices > 1:
        return run_on_devices(settings, held, spec)
    ended = train(spec, Path(held.run_dir), job_hooks(settings, held), held.job_id)
    return record(settings, held, ended)
