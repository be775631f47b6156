"""An append-only, hash-chained audit log: each entry's hash covers the previous one's, so
an edited or deleted row breaks the chain at exactly that entry (`verify`). Appends are
serialised in the database (a PostgreSQL advisory lock held to the commit), so any number
of instances extend one chain."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from typing import Any

from sqlalchemy import Engine, insert, select
from sqlalchemy import text as sql

from gridtokenx.tables import audit_log

GENESIS = bytes(32)
_lock = threading.Lock()  # this process's threads (SQLite: one process writes)
LOCK_KEY = 0x47545831_00000001  # PostgreSQL advisory lock: one appender across instances


def _hash(prev: bytes, seq: int, ts: int, actor: str, action: str, detail: str) -> bytes:
    body = json.dumps([seq, ts, actor, action, detail], separators=(",", ":")).encode()
    return hashlib.sha256(prev + body).digest()


def append(engine: Engine, actor: str, action: str, detail: dict[str, Any] | None = None) -> int:
    text = json.dumps(detail or {}, sort_keys=True, separators=(",", ":"))
    with _lock, engine.begin() as c:
        if c.dialect.name == "postgresql":  # held to the commit: the next reads this one
            c.execute(sql("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
        last = c.execute(
            select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
        ).first()
        seq, prev = (last.seq + 1, bytes(last.hash)) if last else (1, GENESIS)
        ts = int(time.time())
        c.execute(
            insert(audit_log).values(
                seq=seq,
                ts=ts,
                actor=actor,
                action=action,
                detail=text,
                prev_hash=prev,
                hash=_hash(prev, seq, ts, actor, action, text),
            )
        )
    return seq


def entries(engine: Engine, limit: int = 100, before: int | None = None) -> list[dict[str, Any]]:
    query = select(audit_log).order_by(audit_log.c.seq.desc()).limit(limit)
    if before is not None:
        query = query.where(audit_log.c.seq < before)
    with engine.connect() as c:
        return [
            {
                "seq": r.seq,
                "ts": r.ts,
                "actor": r.actor,
                "action": r.action,
                "detail": json.loads(r.detail),
                "hash": bytes(r.hash).hex(),
            }
            for r in c.execute(query)
        ]


def verify(engine: Engine) -> int | None:
    """The first entry whose chain is broken, or None when the whole log holds."""
    prev, expected = GENESIS, 1
    with engine.connect() as c:
        for r in c.execute(select(audit_log).order_by(audit_log.c.seq)):
            if (
                r.seq != expected
                or bytes(r.prev_hash) != prev
                or bytes(r.hash) != _hash(prev, r.seq, r.ts, r.actor, r.action, r.detail)
            ):
                return int(r.seq)
            prev, expected = bytes(r.hash), expected + 1
    return None
