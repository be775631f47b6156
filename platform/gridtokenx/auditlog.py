"""An append-only, hash-chained audit log: each entry's hash covers the previous one's, so
an edited or deleted row breaks the chain at exactly that entry (`verify`). Appends are
serialised in the database (a PostgreSQL advisory lock held to the commit), so any number
of instances extend one chain."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy import text as sql

from gridtokenx.tables import audit_log

GENESIS = bytes(32)
_lock = threading.Lock()  # this process's threads (SQLite: one process writes)
LOCK_KEY = 0x47545831_00000001  # PostgreSQL advisory lock: one appender across instances


def _hash(prev: bytes, seq: int, ts: int, actor: str, action: str, detail: str) -> bytes:
    body = json.dumps([seq, ts, actor, action, detail], separators=(",", ":")).encode()
    return hashlib.sha256(prev + body).digest()


def append(engine: Engine, actor: str, action: str, detail: dict[str, Any] | None = None) -> int:
    with begin(engine) as c:
        return append_many(c, [(actor, action, detail or {})])


@contextmanager
def begin(engine: Engine) -> Iterator[Connection]:
    """A transaction in which `append_many` may add entries: this process's other appenders
    wait for its commit (on PostgreSQL other instances wait from the first append on)."""
    with _lock, engine.begin() as c:
        yield c


def append_many(c: Connection, entries: Sequence[tuple[str, str, dict[str, Any]]]) -> int:
    """Append (actor, action, detail) entries in `c`, a transaction from `begin` (e.g. one
    batch of orders with their audit entries, one commit). Returns the last entry's seq."""
    if c.dialect.name == "postgresql":  # held to the commit: the next reads this one
        c.execute(sql("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
    last = c.execute(
        select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
    ).first()
    seq, prev = (last.seq, bytes(last.hash)) if last else (0, GENESIS)
    ts = int(time.time())
    rows = []
    for actor, action, detail in entries:
        text = json.dumps(detail, sort_keys=True, separators=(",", ":"))
        seq += 1
        digest = _hash(prev, seq, ts, actor, action, text)
        rows.append(
            {
                "seq": seq,
                "ts": ts,
                "actor": actor,
                "action": action,
                "detail": text,
                "prev_hash": prev,
                "hash": digest,
            }
        )
        prev = digest
    if rows:
        c.execute(insert(audit_log), rows)
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
