"""``python -m jobs.maintenance [--once]``: the reaper and the reconciler, every
``LEAP_MAINTENANCE_SECONDS``.

It sends messages exactly as the API does (commit the row, then
:func:`jobs.dispatch.dispatch_committed`), with the same bare producer and without torch.
Run one next to the API; several are safe (rows are locked, duplicate messages are dropped
by the worker's lease), just wasteful. See :mod:`jobs.recovery` for what a pass decides.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from jobs.db import session_factory
from jobs.dispatch import dispatch_committed
from jobs.models import Job
from jobs.recovery import due_for_redispatch, reap_stale
from jobs.settings import Settings, get_settings

logger = logging.getLogger("leap.maintenance")


@dataclass
class PassReport:
    """Job ids by what one pass did; ``undelivered`` are those the broker refused (they
    stay queued and the next pass sends them again)."""

    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    redispatched: list[str] = field(default_factory=list)
    undelivered: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return ", ".join(f"{name} {len(ids)}" for name, ids in vars(self).items())


def _send(
    settings: Settings, session: Session, jobs: list[Job], sent: list[str], report: PassReport
) -> None:
    for job in jobs:
        try:
            dispatch_committed(session, settings, job)
        except Exception as error:  # the broker is down: the next pass tries again
            session.rollback()
            logger.warning(
                "job %s: not sent (%s: %s); next pass retries", job.id, type(error).__name__, error
            )
            report.undelivered.append(job.id)
        else:
            sent.append(job.id)


def run_pass(settings: Settings) -> PassReport:
    """One reaper pass (committed before any message goes out) and one reconciler pass."""
    report = PassReport()
    with session_factory(settings.database_url)() as session:
        reaped = reap_stale(session, settings)
        session.commit()
        report.failed, report.cancelled = reaped.failed, reaped.cancelled
        _send(settings, session, reaped.requeued, report.requeued, report)
        due = due_for_redispatch(session, settings)
        session.commit()  # end the read transaction before the slow sends
        _send(settings, session, due, report.redispatched, report)
    for name in ("requeued", "failed", "cancelled", "redispatched"):
        for job_id in getattr(report, name):
            logger.info("job %s: %s", job_id, name)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jobs.maintenance",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--once", action="store_true", help="run one pass and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = get_settings()
    logger.info(
        "heartbeat timeout %.0f s, max attempts %d, redispatch after %.0f s, every %.0f s",
        settings.heartbeat_timeout(),
        settings.max_attempts,
        settings.redispatch_seconds,
        settings.maintenance_seconds,
    )
    while True:
        try:
            report = run_pass(settings)
            logger.info("pass: %s", report.summary())
        except Exception:  # the database is down: keep the loop, try next time
            if args.once:
                raise
            logger.exception(
                "maintenance pass failed; next in %.0f s", settings.maintenance_seconds
            )
        if args.once:
            return 0
        time.sleep(settings.maintenance_seconds)


if __name__ == "__main__":
    sys.exit(main())
