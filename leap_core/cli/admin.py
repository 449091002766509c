"""``leap admin create-key``: make an API key for the training service.

The service's database layer lives outside ``leap_core`` (the library must not depend on
SQLAlchemy), so it is imported only when an admin command runs, on a machine that has the
service installed and ``LEAP_DATABASE_URL`` set.
"""

from __future__ import annotations

import importlib
from typing import Annotated

import typer

app = typer.Typer(help="Administer the training service.", no_args_is_help=True)


@app.command("create-key")
def create_key(
    owner: Annotated[str, typer.Option(help="who the key's jobs belong to")],
) -> None:
    """Create an API key for OWNER and print it (it is stored hashed and shown only once)."""
    admin = importlib.import_module("jobs.admin")
    try:
        token = admin.create_key(owner)
    except (ValueError, RuntimeError) as error:  # bad owner; database not ready
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(token)


@app.command("migrate")
def migrate() -> None:
    """Bring the job database to the latest schema (Alembic upgrade head)."""
    importlib.import_module("jobs.migrate").upgrade()
    typer.echo("job database is at the latest schema")
