"""Idempotency keys in the database: a key is claimed by one insert before anything is
placed, so that of concurrent requests with one key exactly one does the work.

A row's `status` is 0 while its request is being served and the response's status once it
is done; `request_sha256` is the fingerprint of the request the key was first used for.
The response is recorded in the same transaction as what it reports (`complete` takes the
caller's connection), so a crash leaves either a pending claim and nothing placed, or both.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, delete, select, update
from sqlalchemy.exc import IntegrityError

from gridtokenx.adapters.tables import idempotency

PENDING = 0


def fingerprint(request: dict[str, Any]) -> bytes:
    """The same request gives the same 32 bytes, whatever order its fields came in."""
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).digest()


@dataclass(frozen=True)
class Seen:
    """A key already claimed: `status` 0 while its first request is still being served."""

    status: int
    body: str
    request_sha256: bytes | None


def claim(engine: Engine, user_id: str, key: str, request_sha256: bytes, now: int) -> Seen | None:
    """Claim the key for this request: None when this caller won it, else what is there."""
    try:
        with engine.begin() as c:
            c.execute(
                idempotency.insert().values(
                    user_id=user_id,
                    key=key,
                    status=PENDING,
                    body="",
                    request_sha256=request_sha256,
                    claimed_at=now,
                )
            )
        return None
    except IntegrityError:
        pass
    seen = lookup(engine, user_id, key)
    if seen is None:  # released between our insert and our read: try once more
        return claim(engine, user_id, key, request_sha256, now)
    return seen


def lookup(engine: Engine, user_id: str, key: str) -> Seen | None:
    with engine.connect() as c:
        row = c.execute(
            select(idempotency.c.status, idempotency.c.body, idempotency.c.request_sha256).where(
                idempotency.c.user_id == user_id, idempotency.c.key == key
            )
        ).first()
    if row is None:
        return None
    sha = None if row.request_sha256 is None else bytes(row.request_sha256)
    return Seen(int(row.status), str(row.body), sha)


def complete(c: Connection, user_id: str, key: str, status: int, body: dict[str, Any]) -> None:
    """Record the response, inside the transaction that wrote what it reports."""
    c.execute(
        update(idempotency)
        .where(idempotency.c.user_id == user_id, idempotency.c.key == key)
        .values(status=status, body=json.dumps(body))
    )


def release(engine: Engine, user_id: str, key: str) -> None:
    """Give a pending claim up (its request was refused and changed nothing)."""
    with engine.begin() as c:
        c.execute(
            delete(idempotency).where(
                idempotency.c.user_id == user_id,
                idempotency.c.key == key,
                idempotency.c.status == PENDING,
            )
        )


def release_stale(engine: Engine, claimed_before: int) -> int:
    """Free the keys of claims a crash cut short: nothing of theirs was written (the response
    is recorded with the order), and no live request is older than `claimed_before`."""
    with engine.begin() as c:
        done = c.execute(
            delete(idempotency).where(
                idempotency.c.status == PENDING, idempotency.c.claimed_at < claimed_before
            )
        )
    return int(done.rowcount or 0)
