"""`/explorer`: a transaction traced to its hub batch and signed readings, or to the cleared
trades of its epoch."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from gridtokenx.adapters import books
from gridtokenx.api.pages.layout import api_of, back, page, session
from gridtokenx.audit import BURN_CHECKED, MINT_TO_CHECKED, token_ops
from gridtokenx.ledger.oracle import BATCH, MINT, parse_ranges
from gridtokenx.ledger.settlement import SETTLE
from gridtokenx.wire import batch as wire_batch
from gridtokenx.wire.envelope import verify
from gridtokenx.wire.errors import WireError
from gridtokenx.wire.reading import READING_DOMAIN, decode

router = APIRouter()
TRADES_SHOWN = 200  # of a settlement's epoch


@router.get("/explorer", response_class=HTMLResponse)
def explorer(request: Request, q: str | None = None) -> Response:
    api = api_of(request)
    if q:
        return back(f"/explorer/tx/{q.strip()}")
    latest = [
        {"signature": e.signature, "memos": list(e.memos)} for e in api.platform.ledger.latest(30)
    ]
    return page(request, "explorer.html", session(request), tx=None, q=None, latest=latest)


@router.get("/explorer/tx/{signature}", response_class=HTMLResponse)
def explorer_tx(request: Request, signature: str) -> Response:
    api = api_of(request)
    p = api.platform
    entry = p.ledger.landed(signature)
    latest = [{"signature": e.signature, "memos": list(e.memos)} for e in p.ledger.latest(10)]
    if entry is None:
        return page(request, "explorer.html", session(request), tx=None, q=signature, latest=latest)
    units = {str(p.dep.grx.address): "Wh of GRX", str(p.dep.thb.address): "µTHB"}
    kinds = {MINT_TO_CHECKED: "mint", BURN_CHECKED: "burn"}
    ops = [
        {
            "kind": kinds.get(op.kind, "transfer"),
            "amount": op.amount,
            "unit": units.get(str(op.mint), "units"),
            "account": str(op.account),
        }
        for op in token_ops(entry)
    ]
    tx: dict[str, Any] = {
        "signature": signature,
        "memos": list(entry.memos),
        "ops": ops,
        "batch": None,
        "epoch": None,
    }
    for text in entry.memos:
        tag = None
        parsed = parse_ranges(text, MINT)
        if parsed is not None:
            tag = parsed[0]
        elif text.startswith(BATCH + " "):
            tag = text.split(" ")[2]
        if tag is not None:
            tx["batch"] = _batch(p, tag)
        if text.startswith(SETTLE + " "):
            epoch = int(text.split(" ")[2])
            trades = _epoch_trades(p, epoch)
            tx["epoch"] = {
                "epoch": epoch,
                "trades": trades[:TRADES_SHOWN],
                "more": len(trades) > TRADES_SHOWN,
            }
    return page(request, "explorer.html", session(request), tx=tx, q=signature, latest=latest)


def _epoch_trades(p: Any, epoch: int) -> list[dict[str, Any]]:
    """The epoch's first trades by id, one more than shown (by the primary key)."""
    t = books.trades
    query = select(t).where(t.c.epoch == epoch).order_by(t.c.trade_id).limit(TRADES_SHOWN + 1)
    with p.books.connect() as c:
        return [dict(r._mapping) for r in c.execute(query)]


def _batch(p: Any, tag: str) -> dict[str, Any] | None:
    """The hub batch a memo names, its readings checked: read by the primary keys (the
    batch, its readings, their meters), whatever the history."""
    hub_id, _, epoch_text = tag.rpartition("/")
    if not epoch_text.isdigit() or len(epoch_text) > 18:  # a memo of some other form
        return None
    epoch = int(epoch_text)
    b_, r_, m_ = books.batches, books.batch_readings, books.meters
    with p.books.connect() as c:
        b = c.execute(select(b_).where(b_.c.hub_id == hub_id, b_.c.epoch == epoch)).first()
        if b is None:
            return None
        rows = c.execute(
            select(r_).where(r_.c.hub_id == hub_id, r_.c.epoch == epoch).order_by(r_.c.idx)
        ).all()
        ids = sorted({str(r.meter_id) for r in rows if r.meter_id is not None})
        keys: dict[str, bytes] = {}
        for k in range(0, len(ids), books.CHUNK):
            found = select(m_.c.meter_id, m_.c.public_key).where(
                m_.c.meter_id.in_(ids[k : k + books.CHUNK])
            )
            keys.update({str(i): bytes(key) for i, key in c.execute(found)})
    header = bytes(b.header)
    try:
        verify(header, bytes(b.hub_signature), wire_batch.BATCH_DOMAIN, bytes(b.hub_key))
        verified = True
    except WireError:
        verified = False
    readings = []
    for r in rows:
        reading = decode(bytes(r.raw))
        try:
            verify(
                bytes(r.raw),
                bytes(r.signature),
                READING_DOMAIN,
                keys.get(reading.meter_id, b"\0" * 32),
            )
            ok = True
        except WireError:
            ok = False
        readings.append(
            {
                "meter_id": reading.meter_id,
                "seq": reading.seq,
                "export_wh": reading.export_wh,
                "import_wh": reading.import_wh,
                "ok": ok,
            }
        )
    return {
        "hub_id": hub_id,
        "epoch": epoch_text,
        "root": bytes(b.root).hex(),
        "verified": verified,
        "readings": readings,
    }
