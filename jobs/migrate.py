"""Run the Alembic migrations programmatically (``python -m jobs.migrate``): the service
path's only way to create or change the schema.

It also creates the tracking store the workers will log to, and its experiment, when that
store is a database (SQLite or a database server): created once here, before any worker
starts, rather than by the first workers racing each other. An MLflow server owns its own
store; for one, the experiment is created by whichever worker comes first, and a
concurrent creation is taken as found (:func:`leap_core.tracking.store.experiment_id`).
"""

from __future__ import annotations

import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import make_url

from jobs.settings import get_settings

ROOT = Path(__file__).resolve().parents[1]


def alembic_config(database_url: str | None = None) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    if database_url:
        config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    return config


def upgrade(database_url: str | None = None, revision: str = "head") -> None:
    url = make_url(database_url or get_settings().database_url)
    if url.get_backend_name() == "sqlite" and url.database:
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)  # a fresh $LEAP_HOME
    command.upgrade(alembic_config(url.render_as_string(hide_password=False)), revision)


def downgrade(database_url: str | None = None, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)


def prepare_tracking(tracking_uri: str | None = None) -> str | None:
    """Create the workers' tracking store and experiment when it is a database; returns
    the experiment id, or None for a tracking server (it is not contacted here)."""
    from leap_core.tracking.retry import redacted
    from leap_core.tracking.store import prepare_store

    uri = tracking_uri or get_settings().mlflow_tracking_uri
    if uri.startswith(("http://", "https://", "databricks")):
        return None
    try:
        return prepare_store(uri)
    except Exception as error:
        raise RuntimeError(
            f"tracking store {redacted(uri)} could not be created: {error}"
        ) from error


def main(revision: str = "head") -> None:
    upgrade(None, revision)
    print("job database is at the latest schema")
    if prepare_tracking() is not None:
        print("tracking store and experiment are ready")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "head")
