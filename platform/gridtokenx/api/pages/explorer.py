"""`/explorer`: a transaction traced to its hub batch and signed readings, or to the cleared
trades of its epoch."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

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


@router.get("/explorer", response_class=HTMLResponse)
def explorer(request: Request, q: str | None = None) -> Response:
    api = api_of(request)
    if q:
        return back(f"/explorer/tx/{q.strip()}")
    latest = [
        {"signature": e.signature, "memos": list(e.memos)}
        for e in api.platform.ledger.history()[-30:]
    ]
    return page(
        request, "explorer.html", session(request), tx=None, q=None, latest=list(reversed(latest))
    )


@router.get("/explorer/tx/{signature}", response_class=HTMLResponse)
def explorer_tx(request: Request, signature: str) -> Response:
    api = api_of(request)
    p = api.platform
    entry = next((e for e in p.ledger.history() if e.signature == signature), None)
    latest = [{"signature": e.signature, "memos": list(e.memos)} for e in p.ledger.history()[-10:]]
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
            tx["epoch"] = {
                "epoch": epoch,
                "trades": [
                    t
                    for t in books.rows(p.books, books.trades, ("trade_id",))
                    if t["epoch"] == epoch
                ],
            }
    return page(request, "explorer.html", session(request), tx=tx, q=signature, latest=latest)


def _batch(p: Any, tag: str) -> dict[str, Any] | None:
    hub_id, _, epoch = tag.rpartition("/")
    rows = [
        b
        for b in books.rows(p.books, books.batches)
        if b["hub_id"] == hub_id and str(b["epoch"]) == epoch
    ]
    if not rows:
        return None
    b = rows[0]
    header = bytes(b["header"])
    try:
        verify(header, bytes(b["hub_signature"]), wire_batch.BATCH_DOMAIN, bytes(b["hub_key"]))
        verified = True
    except WireError:
        verified = False
    keys = {m["meter_id"]: bytes(m["public_key"]) for m in books.rows(p.books, books.meters)}
    readings = []
    for r in books.rows(p.books, books.batch_readings, ("idx",)):
        if r["hub_id"] != hub_id or str(r["epoch"]) != epoch:
            continue
        reading = decode(bytes(r["raw"]))
        try:
            verify(
                bytes(r["raw"]),
                bytes(r["signature"]),
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
        "epoch": epoch,
        "root": bytes(b["root"]).hex(),
        "verified": verified,
        "readings": readings,
    }
