"""Operator actions that go straight to the database (no API key needed to make one)."""

from __future__ import annotations

from sqlalchemy import make_url
from sqlalchemy.exc import OperationalError, ProgrammingError

from jobs.db import session_scope
from jobs.keys import create_key as _create_key
from jobs.keys import revoke_key as _revoke_key
from jobs.settings import get_settings


class DatabaseNotReady(RuntimeError):
    """The job database cannot be reached or has no schema yet."""


def _not_ready(url: str, error: OperationalError | ProgrammingError) -> DatabaseNotReady:
    shown = make_url(url).render_as_string(hide_password=True)
    return DatabaseNotReady(
        f"job database {shown} is unreachable or not migrated (run `leap admin migrate` "
        f"with the same LEAP_DATABASE_URL): {str(error.orig).strip()}"
    )


def create_key(owner: str, database_url: str | None = None) -> str:
    url = database_url or get_settings().database_url
    try:
        with session_scope(url) as session:
            return _create_key(session, owner)
    except (OperationalError, ProgrammingError) as error:
        raise _not_ready(url, error) from None


def revoke_key(key: str, database_url: str | None = None) -> str:
    """Revoke the key named by its token or prefix; returns ``"<prefix> of <owner>"``.
    An API process that validated the key in the last ``api.deps.KEY_CACHE_SECONDS``
    keeps accepting it that long."""
    url = database_url or get_settings().database_url
    try:
        with session_scope(url) as session:
            row = _revoke_key(session, key)
            return f"{row.prefix} of {row.owner}"
    except (OperationalError, ProgrammingError) as error:
        raise _not_ready(url, error) from None
