"""Run the Alembic migrations programmatically (``python -m jobs.migrate``): the service
path's only way to create or change the schema."""

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


if __name__ == "__main__":
    upgrade(None, sys.argv[1] if len(sys.argv) > 1 else "head")
    print("job database is at the latest schema")
