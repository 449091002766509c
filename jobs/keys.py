"""API keys: random bearer tokens of which only the SHA-256 is stored.

The tokens carry 256 bits of randomness, so a fast hash is enough (there is nothing to
brute-force); the lookup is one indexed equality on the hash.
"""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from jobs.models import ApiKey

TOKEN_PREFIX = "leap_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_key(session: Session, owner: str) -> str:
    """Store a new key for ``owner``; returns the token (shown once, never stored)."""
    owner = owner.strip()
    if not owner:
        raise ValueError("owner: must not be empty")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(owner=owner, prefix=token[:12], key_hash=hash_token(token)))
    return token


def owner_of(session: Session, token: str) -> str | None:
    """The owner of a valid, unrevoked token, else None."""
    key = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_token(token),
                                              ApiKey.revoked_at.is_(None)))
    return key.owner if key else None
