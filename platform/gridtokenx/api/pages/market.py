"""`/`: the market page (epoch countdown, order book, price chart, a quoting order form)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from gridtokenx.api.pages.layout import api_of, page, session, thb
from gridtokenx.api.pages.svg import chart
from gridtokenx.units import UnitError, price_from_thb_per_kwh, receipt

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
def market_page(
    request: Request, side: str = "sell", quantity_wh: str = "1000", price_thb: str = ""
) -> HTMLResponse:
    t = api_of(request).trading
    claims = session(request)
    if t is None:
        return page(
            request,
            "market.html",
            claims,
            epoch={"epoch": "-", "mechanism": "-", "seconds_left": 0, "halted": "no market here"},
            depth={},
            epochs=[],
            chart="",
            form={},
            quote=None,
        )
    with t.lock:
        depth = t.market.depth()
        epoch = {
            "epoch": t.market.epoch,
            "mechanism": t.config.mechanism.value,
            "seconds_left": max(0, t.ends_at(t.market.epoch) - t.clock()),
            "halted": t.market.halted,
            "epoch_s": t.epoch_s,
        }
    rows = {}
    for zone, sides in depth.items():
        bids, asks = sides["bids"], sides["asks"]
        rows[zone] = {
            "rows": [
                (
                    thb(bids[k][0]) if k < len(bids) else "",
                    bids[k][1] if k < len(bids) else "",
                    thb(asks[k][0]) if k < len(asks) else "",
                    asks[k][1] if k < len(asks) else "",
                )
                for k in range(max(len(bids), len(asks)))
            ]
        }
    recent = t.recent_epochs(48)
    points = [
        (e["epoch"], e["clearing_price"], e["volume_wh"])
        for e in reversed(recent)
        if e["clearing_price"] is not None
    ]
    quote, error = None, None
    form = {
        "side": side if side in ("buy", "sell") else "sell",
        "quantity_wh": quantity_wh,
        "price_thb": price_thb,
    }
    if price_thb:
        try:
            q, p = int(quantity_wh), price_from_thb_per_kwh(price_thb)
            if q <= 0:
                raise ValueError
            r = receipt(q, p, 0, t.config.fee_bps)
            wheel = max((rate for rate in _rates(t)), default=0)
            wheeling = q * wheel // 1000
            total = r.energy_value + wheeling if form["side"] == "buy" else r.net_to_seller
            quote = {
                "energy": thb(r.energy_value),
                "fee": thb(r.fee),
                "fee_pct": t.config.fee_bps / 100,
                "wheeling": thb(wheeling),
                "total": thb(total if form["side"] == "sell" else q * p // 1000),
            }
        except (ValueError, UnitError):
            error = "Enter a whole number of Wh and a price in THB per kWh."
    return page(
        request,
        "market.html",
        claims,
        epoch=epoch,
        depth=rows,
        chart=chart(points),
        form=form,
        quote=quote,
        error=error or request.query_params.get("error"),
        epochs=[{**e, "price": thb(e["clearing_price"])} for e in recent[:12]],
    )


def _rates(t: Any) -> list[int]:
    wheeling = t.config.wheeling
    zones = sorted(wheeling.zones) if hasattr(wheeling, "zones") else []
    rates = [wheeling.rate(a, b) for a in zones for b in zones]
    return [r for r in rates if r is not None]
