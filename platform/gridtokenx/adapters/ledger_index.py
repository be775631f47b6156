"""A per-account record of the chain's transactions (`ledger_account_entries`), so that a
wallet's newest transactions are read by the primary key, whatever the chain's length.

`catch_up` indexes what landed since the last look: the chain's history from the position
stored in `settings` (`ledger_index_seen`), each transaction once per account it names
(its programs aside), in one database transaction with the new position. Instances share
the work under a PostgreSQL advisory lock; SQLite has one process, its threads a lock."""

from __future__ import annotations

import json
import threading
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy import text as sql

from gridtokenx.adapters.books import account_entries, certificates, in_chunks
from gridtokenx.adapters.tables import settings
from gridtokenx.ledger.backend import ChainView
from gridtokenx.ledger.certificates import TRANSITIONS, event_of

SEEN = "ledger_index_seen"
CERTIFICATES_SEEN = "ledger_certificates_seen"
LOCK_KEY = 0x47545831_00000002  # PostgreSQL advisory lock: one indexer across instances
_lock = threading.Lock()


def _seen(c: Connection, name: str = SEEN) -> int | None:
    value = c.execute(select(settings.c.value).where(settings.c.name == name)).scalar()
    return None if value is None else int(json.loads(value))


def _store_seen(c: Connection, name: str, stored: int | None, seen: int) -> None:
    value = json.dumps(seen)
    if stored is None:
        c.execute(insert(settings).values(name=name, value=value))
    else:
        c.execute(update(settings).where(settings.c.name == name).values(value=value))


def catch_up(engine: Engine, chain: ChainView) -> int:
    """Index the transactions landed since the last call; how many there were."""
    with _lock, engine.begin() as c:
        if c.dialect.name == "postgresql":  # held to the commit: the next starts after it
            c.execute(sql("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
        stored = _seen(c)
        seen = stored or 0
        landed = chain.history(seen)
        rows: list[dict[str, Any]] = []
        for pos, entry in enumerate(landed, start=seen):
            message = entry.tx.message
            keys = message.account_keys
            programs = {ix.program_id_index for ix in message.instructions}
            memos = json.dumps(list(entry.memos), separators=(",", ":"))
            for account in {str(k) for n, k in enumerate(keys) if n not in programs}:
                rows.append(
                    {"account": account, "pos": pos, "signature": entry.signature, "memos": memos}
                )
        for chunk in in_chunks(rows):
            c.execute(insert(account_entries), chunk)
        if not landed and stored is not None:
            return 0
        _store_seen(c, SEEN, stored, seen + len(landed))
        return len(landed)


def catch_up_certificates(engine: Engine, chain: ChainView) -> int:
    """Fold the certificate memos landed since the last call into `ledger_certificates`
    (the same reading as `Registry.all`, `event_of` and `apply`), with the new position in
    one database transaction; how many transactions landed."""
    cert = certificates
    with _lock, engine.begin() as c:
        if c.dialect.name == "postgresql":
            c.execute(sql("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
        stored = _seen(c, CERTIFICATES_SEEN)
        seen = stored or 0
        landed = chain.history(seen)
        for pos, entry in enumerate(landed, start=seen):
            for text in entry.memos:
                event = event_of(text)
                if event is None:
                    continue
                if event.issued is not None:
                    issued = event.issued
                    c.execute(delete(cert).where(cert.c.mint == event.mint))
                    c.execute(
                        insert(cert).values(
                            mint=event.mint,
                            pos=pos,
                            meter_id=issued.meter_id,
                            period=issued.period,
                            source=issued.source,
                            from_wh=issued.from_wh,
                            to_wh=issued.to_wh,
                            status=issued.status,
                            holder=str(issued.holder),
                        )
                    )
                    continue
                moved: dict[str, Any] = {"status": TRANSITIONS[event.action][1]}
                if event.to is not None:
                    moved["holder"] = str(event.to)
                c.execute(update(cert).where(cert.c.mint == event.mint).values(**moved))
        if not landed and stored is not None:
            return 0
        _store_seen(c, CERTIFICATES_SEEN, stored, seen + len(landed))
        return len(landed)


def entries_of(
    engine: Engine, accounts: set[str], limit: int, before: int | None = None
) -> list[dict[str, Any]]:
    """The transactions naming any of these accounts, newest first, at most `limit`, older
    than position `before`: one index range per account, read newest first."""
    e = account_entries
    found: dict[int, dict[str, Any]] = {}
    with engine.connect() as c:
        for account in sorted(accounts):
            query = select(e.c.pos, e.c.signature, e.c.memos).where(e.c.account == account)
            if before is not None:
                query = query.where(e.c.pos < before)
            for pos, signature, memos in c.execute(query.order_by(e.c.pos.desc()).limit(limit)):
                found[int(pos)] = {
                    "pos": int(pos),
                    "signature": signature,
                    "memos": list(json.loads(memos)),
                }
    return [found[p] for p in sorted(found, reverse=True)[:limit]]
