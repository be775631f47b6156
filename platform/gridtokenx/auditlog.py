"""An append-only, hash-chained audit log: each entry's hash covers the previous one's, so
an edited or deleted row breaks the chain at exactly that entry (`verify`). Appends are
serialised in the database (a PostgreSQL advisory lock held to the commit), so any number
of instances extend one chain.

`verify` walks the whole chain (`gridtokenx audit`); a page of the log (`verify_page`, the
admin API and page) checks only its own links, the one entry before it, and the entries
appended since the last verified checkpoint (kept in `settings`), so it costs the page and
what is new."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, Row, insert, select, update
from sqlalchemy import text as sql

from gridtokenx.adapters.tables import audit_log, settings

GENESIS = bytes(32)
_lock = threading.Lock()  # this process's threads (SQLite: one process writes)
LOCK_KEY = 0x47545831_00000001  # PostgreSQL advisory lock: one appender across instances
CHECKPOINT = "audit_verified"  # settings: {"seq": n, "hash": hex} of the newest verified entry
CHECK_LOCK_KEY = 0x47545831_00000003  # PostgreSQL advisory lock: one checkpoint writer
CHECK_CHUNK = 10_000  # entries read at a time past the checkpoint
CHECK_MAX = 50_000  # entries one look verifies at most (a long unverified log: several looks)
_checking = threading.Lock()


# `json.dumps` with options builds an encoder per call: these are built once (the same text)
_body = json.JSONEncoder(separators=(",", ":")).encode
_detail = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode


def _hash(prev: bytes, seq: int, ts: int, actor: str, action: str, detail: str) -> bytes:
    body = _body([seq, ts, actor, action, detail]).encode()
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


@contextmanager
def begin_late(engine: Engine) -> Iterator[tuple[Connection, Callable[[], None]]]:
    """`begin` for a caller with slow work (ledger I/O) before its first write: this
    process's lock is taken only when it calls `hold()` (before its first write or append)
    and kept to the commit, so other appenders never wait out that work."""
    held = False

    def hold() -> None:
        nonlocal held
        if not held:
            _lock.acquire()
            held = True

    try:
        with engine.begin() as c:
            yield c, hold
    finally:
        if held:
            _lock.release()


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
        text = _detail(detail)
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
        return [_entry(r) for r in c.execute(query)]


def _entry(r: Row[Any]) -> dict[str, Any]:
    return {
        "seq": r.seq,
        "ts": r.ts,
        "actor": r.actor,
        "action": r.action,
        "detail": json.loads(r.detail),
        "hash": bytes(r.hash).hex(),
    }


def _holds(r: Row[Any]) -> bool:
    """The entry's own hash covers its fields and the previous hash it names."""
    return bytes(r.hash) == _hash(bytes(r.prev_hash), r.seq, r.ts, r.actor, r.action, r.detail)


def verify_page(
    engine: Engine, limit: int = 100, before: int | None = None
) -> tuple[list[dict[str, Any]], bool, int | None, int]:
    """A page of the log, newest first (`entries`), whether older entries follow, the first
    broken entry among the page (each entry's hash, its link to the one before it, which is
    read too, and seq 1's to the genesis) and those appended since the checkpoint (at most
    CHECK_MAX of them a look), and the checkpoint's seq after the look."""
    query = select(audit_log).order_by(audit_log.c.seq.desc()).limit(limit + 1)
    if before is not None:
        query = query.where(audit_log.c.seq < before)
    with engine.connect() as c:
        rows = c.execute(query).all()
    broken: list[int] = []
    for n, r in enumerate(rows[:limit]):
        older = rows[n + 1] if n + 1 < len(rows) else None
        if older is None:
            linked = r.seq != 1 or bytes(r.prev_hash) == GENESIS  # the oldest stored, or not
        else:
            linked = older.seq == r.seq - 1 and bytes(r.prev_hash) == bytes(older.hash)
        if not linked or not _holds(r):
            broken.append(int(r.seq))
    new, verified_to = verify_since_checkpoint(engine)
    if new is not None:
        broken.append(new)
    return (
        [_entry(r) for r in rows[:limit]],
        len(rows) > limit,
        min(broken, default=None),
        verified_to,
    )


def _checkpoint(c: Connection) -> tuple[int, bytes] | None:
    value = c.execute(select(settings.c.value).where(settings.c.name == CHECKPOINT)).scalar()
    if value is None:
        return None
    found = json.loads(value)
    return int(found["seq"]), bytes.fromhex(found["hash"])


def verify_since_checkpoint(engine: Engine, most: int | None = None) -> tuple[int | None, int]:
    """The first broken entry after the verified checkpoint, or None, and the checkpoint's
    seq after this look: it moves up to the newest entry that holds, at most `most` entries
    a look, so each entry is walked once, whatever the log's length."""
    most = CHECK_MAX if most is None else most
    with _checking, engine.begin() as c:
        if c.dialect.name == "postgresql":  # one checker at a time across instances
            c.execute(sql("SELECT pg_advisory_xact_lock(:k)"), {"k": CHECK_LOCK_KEY})
        stored = _checkpoint(c)
        seq, prev = stored or (0, GENESIS)
        found: int | None = None
        start = seq
        while found is None and seq - start < most:
            query = select(audit_log).where(audit_log.c.seq > seq).order_by(audit_log.c.seq)
            rows = c.execute(query.limit(min(CHECK_CHUNK, most - (seq - start)))).all()
            for r in rows:
                if r.seq != seq + 1 or bytes(r.prev_hash) != prev or not _holds(r):
                    found = int(r.seq)
                    break
                seq, prev = int(r.seq), bytes(r.hash)
            if not rows or rows[-1].seq != seq:  # the log's end, or the break
                break
        value = json.dumps({"seq": seq, "hash": prev.hex()})
        if stored is None:
            c.execute(insert(settings).values(name=CHECKPOINT, value=value))
        elif seq > stored[0]:
            c.execute(update(settings).where(settings.c.name == CHECKPOINT).values(value=value))
    return found, seq


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
