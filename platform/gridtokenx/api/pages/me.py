"""`/me`: a household's balances, meter readings, orders (with cancel) and trades with
settlement links."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from solders.pubkey import Pubkey

from gridtokenx import books
from gridtokenx.api.pages.layout import api_of, back, page, session, thb
from gridtokenx.wire.errors import WireError
from gridtokenx.wire.reading import decode

router = APIRouter()


@router.get("/me", response_class=HTMLResponse)
def me_page(request: Request) -> Response:
    api = api_of(request)
    claims = session(request)
    if claims is None:
        return back("/login")
    p, dep = api.platform, api.platform.dep
    owner = Pubkey.from_string(claims.wallet)
    keys = {str(dep.grx.account_of(owner)), str(dep.thb.account_of(owner)), str(owner)}
    txs = [
        {"signature": e.signature, "memos": list(e.memos)}
        for e in p.ledger.history()[-3000:]
        if keys & {str(k) for k in e.tx.message.account_keys}
    ][-30:]
    wallet = {
        "wallet": claims.wallet,
        "grx_wh": dep.grx.balance(owner),
        "thb_micro": dep.thb.balance(owner),
        "frozen": dep.grx.is_frozen(owner),
        "transactions": list(reversed(txs)),
    }
    orders = [
        {**o, "price_thb": thb(o["price"])}
        for o in (api.trading.orders_of(claims.user_id) if api.trading else [])
    ]
    trades = []
    epochs_tx = {
        e["epoch"]: e["transactions"]
        for e in (api.trading.recent_epochs(500) if api.trading else [])
    }
    for t in books.rows(p.books, books.trades, ("epoch", "trade_id")):
        if claims.wallet in (t["buyer"], t["seller"]):
            buying = t["buyer"] == claims.wallet
            trades.append(
                {
                    "epoch": t["epoch"],
                    "side": "buy" if buying else "sell",
                    "wh": t["wh"],
                    "money": ("-" if buying else "+")
                    + thb(t["buyer_paid"] if buying else t["seller_net"]),
                    "transactions": epochs_tx.get(t["epoch"], []),
                }
            )
    mine = {r["meter_id"] for r in books.rows(p.books, books.meters) if r["owner"] == claims.wallet}
    readings = []
    for r in books.rows(p.books, books.batch_readings, ("hub_id", "epoch", "idx")):
        try:
            reading = decode(bytes(r["raw"]))
        except WireError:
            continue
        if reading.meter_id in mine:
            readings.append(
                {
                    "meter_id": reading.meter_id,
                    "seq": reading.seq,
                    "import_wh": reading.import_wh,
                    "export_wh": reading.export_wh,
                    "batch": f"{r['hub_id']}/{r['epoch']}",
                }
            )
    return page(
        request,
        "me.html",
        claims,
        wallet=wallet,
        orders=orders,
        trades=list(reversed(trades))[:50],
        readings=readings[-20:][::-1],
    )
