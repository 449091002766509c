"""API keys: random bearer tokens of which only the SHA-256 is stored.

The tokens carry 256 bits of randomness, so a fast hash is enough (there is nothing to
brute-force). A key is found by its public 12-character prefix (indexed), and the hash
of the presented token is then compared with the stored one in constant time, so how
long a refusal takes says nothing about how close a guess was.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime

from sqlalchemy import or_, select
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
    digest = hash_token(token)
    owner = None
    for key in session.scalars(
        select(ApiKey).where(ApiKey.prefix == token[:12], ApiKey.revoked_at.is_(None))
    ):
        if hmac.compare_digest(key.key_hash, digest):
            owner = key.owner
    return owner


def revoke_key(session: Session, key: str) -> ApiKey:
    """Mark the key given by its full token or its listed prefix (``leap_AbCdEfG``) revoked;
    returns it. A prefix that matches several live keys is refused rather than guessed."""
    key = key.strip()
    if len(key) < len(TOKEN_PREFIX) + 4:
        raise ValueError(
            f"key: {key!r} is too short to name one key; give the token or its 12-character prefix"
        )
    matches = session.scalars(
        select(ApiKey).where(
            or_(ApiKey.key_hash == hash_token(key), ApiKey.prefix == key[:12]),
            ApiKey.revoked_at.is_(None),
        )
    ).all()
    exact = [row for row in matches if row.key_hash == hash_token(key)]
    if exact:
        matches = exact
    elif len(key) > 12:  # a full token that is not stored: never fall back on its prefix
        matches = []
    if not matches:
        raise LookupError(f"key: no live API key matches {key[:12]!r}")
    if len(matches) > 1:
        raise LookupError(
            f"key: prefix {key[:12]!r} matches {len(matches)} live keys; give the full token"
        )
    matches[0].revoked_at = datetime.now(UTC)
    return matches[0]
