"""Read-side queries over the books that pages and agents need, each by an index and with a
LIMIT, so that their cost follows the page, not the history stored."""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from sqlalchemy import Engine, Table, select, tuple_

from gridtokenx.adapters import books, tables


def trades_of_wallet(
    engine: Engine, wallet: str | None, limit: int = 100, after: tuple[int, str] | None = None
) -> list[dict[str, Any]]:
    """A wallet's trades (as buyer or seller; every trade for None) newest epoch first by
    (epoch, trade_id), at most `limit`, those before the key `after`: one index range per
    side (ledger_trades_buyer_page, _seller_page; the primary key for every trade)."""
    t = books.trades
    key = (t.c.epoch, t.c.trade_id)
    found: list[dict[str, Any]] = []
    with engine.connect() as c:
        for column in (t.c.buyer, t.c.seller) if wallet is not None else (None,):
            query = select(t)
            if column is not None:
                query = query.where(column == wallet)
            if after is not None:
                query = query.where(tuple_(*key) < tuple_(*after))
            query = query.order_by(*(k.desc() for k in key)).limit(limit)
            found += [dict(r._mapping) for r in c.execute(query)]
    unique = {(r["epoch"], r["trade_id"]): r for r in found}  # a self-trade is on both sides
    newest = sorted(unique.values(), key=lambda r: (r["epoch"], r["trade_id"]), reverse=True)
    return newest[:limit]


def users_page(
    engine: Engine, limit: int, after: tuple[int, str] | None = None, status: str | None = None
) -> list[dict[str, Any]]:
    """The users oldest first by (created_at, user_id), all or those of one status, at most
    `limit` after the key `after` (users_page, users_status_page); no password hashes."""
    u = tables.users
    key = (u.c.created_at, u.c.user_id)
    columns = [col for col in u.c if col.name != "password_hash"]
    query = select(*columns)
    if status is not None:
        query = query.where(u.c.status == status)
    if after is not None:
        query = query.where(tuple_(*key) > tuple_(*after))
    with engine.connect() as c:
        return [dict(r._mapping) for r in c.execute(query.order_by(*key).limit(limit))]


def registry_page(
    engine: Engine, table: Table, key: str, limit: int, after: str | None = None
) -> list[dict[str, Any]]:
    """Hubs or meters (`table`, keyed by the column `key`) in id order, at most `limit`
    after the id `after`: the operator's page shows a site's registry a page at a time."""
    column = table.c[key]
    query = select(table).order_by(column).limit(limit)
    if after is not None:
        query = query.where(column > after)
    with engine.connect() as c:
        return [dict(r._mapping) for r in c.execute(query)]


def registered_meters(
    engine: Engine, meter_ids: Collection[str]
) -> tuple[dict[str, bytes], dict[str, str]]:
    """These meters' registered keys, and the owners' wallets of the active ones, by key
    (a batch's review: the cost follows the batch, not the site's registry)."""
    m = books.meters
    keys: dict[str, bytes] = {}
    owners: dict[str, str] = {}
    with engine.connect() as c:
        for chunk in books.in_chunks(sorted(meter_ids)):
            query = select(m.c.meter_id, m.c.public_key, m.c.owner, m.c.status)
            for r in c.execute(query.where(m.c.meter_id.in_(chunk))):
                keys[r.meter_id] = bytes(r.public_key)
                if r.status == "active":
                    owners[r.meter_id] = r.owner
    return keys, owners


def meters_of_wallet(engine: Engine, wallet: str) -> list[str]:
    m = books.meters
    with engine.connect() as c:
        return [
            str(x) for x in c.execute(select(m.c.meter_id).where(m.c.owner == wallet)).scalars()
        ]


def readings_of_meters(
    engine: Engine,
    meter_ids: Collection[str],
    limit: int = 100,
    after: tuple[int, int, str] | None = None,
    raw: bool = True,
) -> list[dict[str, Any]]:
    """These meters' readings as stored in the hubs' batches, newest first by (epoch, idx,
    hub_id), at most `limit` before the key `after`: one index range per meter
    (ledger_batch_readings_meter_page); `raw` adds the signed reading (a few hundred bytes)."""
    if not meter_ids:
        return []
    r = books.batch_readings
    key = (r.c.epoch, r.c.idx, r.c.hub_id)
    columns = [r.c.hub_id, r.c.epoch, r.c.idx, r.c.meter_id, r.c.seq, r.c.import_wh, r.c.export_wh]
    if raw:
        columns.append(r.c.raw)  # for the reading's time
    found: list[dict[str, Any]] = []
    with engine.connect() as c:
        for meter_id in sorted(meter_ids):  # one index range each, read newest first
            query = select(*columns).where(r.c.meter_id == meter_id)
            if after is not None:
                query = query.where(tuple_(*key) < tuple_(*after))
            query = query.order_by(*(k.desc() for k in key)).limit(limit)
            found += [dict(row._mapping) for row in c.execute(query)]
    found.sort(key=lambda row: (row["epoch"], row["idx"], row["hub_id"]), reverse=True)
    return found[:limit]


def epochs_page(engine: Engine, limit: int, before: int | None = None) -> list[dict[str, Any]]:
    """The cleared epochs newest first, at most `limit` below `before`, by the primary key;
    each with its settlement signatures as a list."""
    e = tables.epochs
    query = select(e).order_by(e.c.epoch.desc()).limit(limit)
    if before is not None:
        query = query.where(e.c.epoch < before)
    with engine.connect() as c:
        return [
            {**dict(r._mapping), "transactions": json.loads(r.transactions or "[]")}
            for r in c.execute(query)
        ]


def settlement_transactions(engine: Engine, epochs: Collection[int]) -> dict[int, list[str]]:
    """The settlement signatures of these epochs (those settled), by primary key."""
    e = tables.epochs
    out: dict[int, list[str]] = {}
    with engine.connect() as c:
        for chunk in books.in_chunks(sorted(epochs)):
            query = select(e.c.epoch, e.c.transactions).where(e.c.epoch.in_(chunk))
            for epoch, transactions in c.execute(query):
                out[int(epoch)] = list(json.loads(transactions or "[]"))
    return out


def recent_flows(engine: Engine, span: int = 7) -> dict[str, tuple[int, int]]:
    """Each owner wallet's average import and export power (W) over its meters' newest
    `span` readings in the hubs' batches (about a minute at the firmware's 10 s interval):
    the persistence forecast the demo agents trade on. One indexed lookup per meter."""
    from gridtokenx.wire.reading import decode

    m, r = books.meters, books.batch_readings
    out: dict[str, tuple[int, int]] = {}
    with engine.connect() as c:
        for meter_id, owner in c.execute(select(m.c.meter_id, m.c.owner)).all():
            rows = c.execute(
                select(r.c.raw)
                .where(r.c.meter_id == meter_id)
                .order_by(r.c.epoch.desc(), r.c.idx.desc())
                .limit(span)
            ).all()
            if len(rows) < 2:
                continue
            newest, oldest = decode(bytes(rows[0].raw)), decode(bytes(rows[-1].raw))
            elapsed = newest.ts - oldest.ts
            if elapsed <= 0:
                continue
            import_w = (newest.import_wh - oldest.import_wh) * 3600 // elapsed
            export_w = (newest.export_wh - oldest.export_wh) * 3600 // elapsed
            before = out.get(str(owner), (0, 0))
            out[str(owner)] = (before[0] + max(0, import_w), before[1] + max(0, export_w))
    return out


def certificates_of_holder(
    engine: Engine, holder: str, limit: int, before: tuple[int, str] | None = None
) -> list[dict[str, Any]]:
    """A holder's certificates newest issue first by (pos, mint), at most `limit` before the
    key `before`: one range of ledger_certificates_holder_page."""
    cert = books.certificates
    key = (cert.c.pos, cert.c.mint)
    query = select(cert).where(cert.c.holder == holder)
    if before is not None:
        query = query.where(tuple_(*key) < tuple_(*before))
    query = query.order_by(*(k.desc() for k in key)).limit(limit)
    with engine.connect() as c:
        return [dict(r._mapping) for r in c.execute(query)]
