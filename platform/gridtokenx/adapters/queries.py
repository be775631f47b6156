"""Read-side queries over the books that pages and agents need, each by an index and with a
LIMIT, so that their cost follows the page, not the history stored."""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from sqlalchemy import Engine, select

from gridtokenx import books, tables


def trades_of_wallet(engine: Engine, wallet: str, limit: int = 100) -> list[dict[str, Any]]:
    """A wallet's newest trades (as buyer or seller), newest epoch first."""
    t = books.trades
    found: list[dict[str, Any]] = []
    with engine.connect() as c:
        for column in (t.c.buyer, t.c.seller):
            query = (
                select(t).where(column == wallet).order_by(t.c.epoch.desc(), t.c.trade_id.desc())
            )
            found += [dict(r._mapping) for r in c.execute(query.limit(limit))]
    unique = {(r["epoch"], r["trade_id"]): r for r in found}
    newest = sorted(unique.values(), key=lambda r: (r["epoch"], r["trade_id"]), reverse=True)
    return newest[:limit]


def meters_of_wallet(engine: Engine, wallet: str) -> list[str]:
    m = books.meters
    with engine.connect() as c:
        return [
            str(x) for x in c.execute(select(m.c.meter_id).where(m.c.owner == wallet)).scalars()
        ]


def readings_of_meters(
    engine: Engine, meter_ids: Collection[str], limit: int = 100
) -> list[dict[str, Any]]:
    """These meters' newest readings as stored in the hubs' batches, newest first."""
    if not meter_ids:
        return []
    r = books.batch_readings
    columns = (r.c.hub_id, r.c.epoch, r.c.idx, r.c.meter_id, r.c.seq, r.c.import_wh, r.c.export_wh)
    found: list[dict[str, Any]] = []
    with engine.connect() as c:
        for meter_id in sorted(meter_ids):  # one index range each, read newest first
            query = (
                select(*columns)
                .where(r.c.meter_id == meter_id)
                .order_by(r.c.epoch.desc(), r.c.idx.desc())
                .limit(limit)
            )
            found += [dict(row._mapping) for row in c.execute(query)]
    found.sort(key=lambda row: (row["epoch"], row["idx"]), reverse=True)
    return found[:limit]


def settlement_transactions(engine: Engine, epochs: Collection[int]) -> dict[int, list[str]]:
    """The settlement signatures of these epochs (those settled), by primary key."""
    e = tables.epochs
    out: dict[int, list[str]] = {}
    ids = sorted(epochs)
    with engine.connect() as c:
        for k in range(0, len(ids), books.CHUNK):
            query = select(e.c.epoch, e.c.transactions).where(
                e.c.epoch.in_(ids[k : k + books.CHUNK])
            )
            for epoch, transactions in c.execute(query):
                out[int(epoch)] = list(json.loads(transactions or "[]"))
    return out


def newest_imports(engine: Engine) -> dict[str, int]:
    """Each owner wallet's newest import register (of its meters' newest readings): one
    indexed lookup per meter, not a pass over every stored reading."""
    m, r = books.meters, books.batch_readings
    out: dict[str, int] = {}
    with engine.connect() as c:
        for meter_id, owner in c.execute(select(m.c.meter_id, m.c.owner)).all():
            newest = c.execute(
                select(r.c.import_wh)
                .where(r.c.meter_id == meter_id)
                .order_by(r.c.epoch.desc(), r.c.idx.desc())
                .limit(1)
            ).scalar()
            if newest is not None:
                out[str(owner)] = max(out.get(str(owner), 0), int(newest))
    return out
