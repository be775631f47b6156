"""`/me`: a household's balances, meter readings, orders (with cancel), trades with
settlement links, and the download of its statement."""

from __future__ import annotations

import datetime as dt
import time
from datetime import tzinfo
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from solders.pubkey import Pubkey

from gridtokenx.adapters import queries
from gridtokenx.api.pages.layout import api_of, back, page, session, thb
from gridtokenx.api.routers.wallet import statement_download, wallet_transactions
from gridtokenx.sitetime import local_time, site_zone
from gridtokenx.wire import reading as wire_reading
from gridtokenx.wire.errors import WireError

router = APIRouter()
# The account page is a summary: the newest 20 of each list (the API's lists have the rest,
# a page at a time), and every order of the open epoch before those (all cancellable).
ME_TRADES = ME_READINGS = ME_TRANSACTIONS = ME_ORDERS = 20


@router.get("/me/statement")
def me_statement(request: Request) -> Response:
    """The statement download behind the account page's form (the session's user only)."""
    claims = session(request)
    if claims is None:
        return back("/login")
    first, last = (request.query_params.get(k, "")[:10] for k in ("from", "to"))
    return statement_download(api_of(request), claims.user_id, first, last)


@router.get("/me", response_class=HTMLResponse)
def me_page(request: Request) -> Response:
    api = api_of(request)
    claims = session(request)
    if claims is None:
        return back("/login")
    p, dep = api.platform, api.platform.dep
    owner = Pubkey.from_string(claims.wallet)
    more: dict[str, bool] = {}  # each list: one row more read than shown, to say so

    def first(name: str, rows: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
        more[name] = len(rows) > limit
        return rows[:limit]

    txs = [
        {"signature": e["signature"], "memos": e["memos"]}
        for e in first(
            "transactions", wallet_transactions(p, owner, ME_TRANSACTIONS + 1), ME_TRANSACTIONS
        )
    ]
    wallet = {
        "wallet": claims.wallet,
        "grx_wh": dep.grx.balance(owner),
        "thb_micro": dep.thb.balance(owner),
        "frozen": dep.grx.is_frozen(owner),
        "custodial": p.keys.name_of(claims.wallet) is not None,
        "pending": api.trading is not None and api.trading.user_status(claims.user_id) == "pending",
        "transactions": txs,
    }
    market = api.trading
    shown = ME_ORDERS + market.in_open_epoch(claims.user_id) if market else 0
    orders = [
        {**o, "price_thb": thb(o["price"])}
        for o in first(
            "orders", market.orders_of(claims.user_id, shown + 1) if market else [], shown
        )
    ]
    trades = []
    newest = first(
        "trades", queries.trades_of_wallet(p.books, claims.wallet, ME_TRADES + 1), ME_TRADES
    )
    epochs_tx = queries.settlement_transactions(p.books, {t["epoch"] for t in newest})
    for t in newest:
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
    mine = queries.meters_of_wallet(p.books, claims.wallet)
    zone = site_zone()
    readings = [
        {
            "meter_id": r["meter_id"],
            "seq": r["seq"],
            "import_wh": r["import_wh"],
            "export_wh": r["export_wh"],
            "batch": f"{r['hub_id']}/{r['epoch']}",
            "time": _time_of(bytes(r["raw"]), zone),
        }
        for r in first(
            "readings", queries.readings_of_meters(p.books, mine, ME_READINGS + 1), ME_READINGS
        )
    ]
    return page(
        request,
        "me.html",
        claims,
        wallet=wallet,
        orders=orders,
        trades=trades,
        readings=readings,
        more=more,
        today=dt.datetime.fromtimestamp(api.trading.clock() if api.trading else time.time(), dt.UTC)
        .date()
        .isoformat(),
    )


def _time_of(raw: bytes, zone: tzinfo) -> str:
    """A stored reading's time on the site's clock ("-" if its clock was not set)."""
    try:
        reading = wire_reading.decode(raw)
    except WireError:  # verified before it was stored: only a damaged row
        return "-"
    return local_time(reading.ts, zone) if reading.time_set else "-"
