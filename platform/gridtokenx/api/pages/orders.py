"""The order forms of the market and `/me` pages: place (price in THB/kWh) and cancel."""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from gridtokenx.api.errors import LEDGER_ERRORS, refusal
from gridtokenx.api.pages.layout import api_of, back, session
from gridtokenx.errors import CodedError
from gridtokenx.units import UnitError, price_from_thb_per_kwh

router = APIRouter()


@router.post("/orders")
def place(
    request: Request, side: str = Form(), quantity_wh: str = Form(), price_thb: str = Form()
) -> Response:
    api = api_of(request)
    claims = session(request)
    if claims is None:
        return back("/login", error="Log in to trade.")
    if api.trading is None:
        return back("/", error="no market here")
    try:
        row = api.trading.place(
            claims.user_id, side, int(quantity_wh), price_from_thb_per_kwh(price_thb)
        )
    except (CodedError, *LEDGER_ERRORS, ValueError, UnitError) as err:
        return back("/", error=refusal(err))
    return back("/me", notice=f"Order {row['order_id']} placed.")


@router.post("/orders/{order_id}/cancel")
def cancel(request: Request, order_id: str) -> Response:
    api = api_of(request)
    claims = session(request)
    if claims is None or api.trading is None:
        return back("/login")
    try:
        api.trading.cancel(claims.user_id, order_id)
    except (CodedError, *LEDGER_ERRORS) as err:
        return back("/me", error=refusal(err))
    return back("/me", notice=f"Order {order_id} cancelled; its escrow is back.")
