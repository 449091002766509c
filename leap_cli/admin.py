"""``leap admin create-key`` / ``revoke-key``: make and revoke API keys of the training
service.

The job domain (SQLAlchemy, Alembic) is imported only when an admin command runs, so
``leap train`` and the other commands start without loading the database layer; the admin
commands need the service installed and ``LEAP_DATABASE_URL`` set.
"""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(help="Administer the training service.", no_args_is_help=True)


@app.command("create-key")
def create_key(
    owner: Annotated[str, typer.Option(help="who the key's jobs belong to")],
) -> None:
    """Create an API key for OWNER and print it (it is stored hashed and shown only once)."""
    from jobs import admin

    try:
        token = admin.create_key(owner)
    except (ValueError, RuntimeError) as error:  # bad owner; database not ready
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(token)


@app.command("revoke-key")
def revoke_key(
    key: Annotated[
        str, typer.Argument(help="the key's token, or its 12-character prefix (leap_…) as stored")
    ],
) -> None:
    """Revoke an API key: a 401 from then on (after at most the API's 30 s key cache)."""
    from jobs import admin

    try:
        revoked = admin.revoke_key(key)
    except (ValueError, LookupError, RuntimeError) as error:  # bad/unknown key; database
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"revoked {revoked}")


@app.command("migrate")
def migrate() -> None:
    """Bring the job database to the latest schema (Alembic upgrade head) and create the
    workers' tracking store and experiment when that store is a database."""
    from jobs import migrate as schema

    schema.upgrade()
    typer.echo("job database is at the latest schema")
    if schema.prepare_tracking() is not None:
        typer.echo("tracking store and experiment are ready")
