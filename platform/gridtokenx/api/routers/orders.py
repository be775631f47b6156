"""A household's orders: place (with escrow; honours Idempotency-Key), cancel, list."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import JSONResponse

from gridtokenx.api.deps import TradingDep, UserDep
from gridtokenx.api.schemas import (
    CURSOR_HELP,
    NEXT_CURSOR,
    ORDER_CURSOR_PATTERN,
    OrderIn,
    OrderOut,
    errors,
)
from gridtokenx.errors import Forbidden
from gridtokenx.services.orders import OrderRequest, place_order

router = APIRouter(
    prefix="/api/v1", tags=["orders"], responses=errors(401, 403, 409, 413, 422, 429, 503)
)


@router.post("/orders", status_code=201, response_model=OrderOut)
def place(
    body: OrderIn,
    claims: UserDep,
    t: TradingDep,
    idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
) -> JSONResponse:
    if claims.role not in ("consumer", "prosumer", "admin"):
        raise Forbidden("wrong_role", "only households trade")
    request = OrderRequest(body.side, body.quantity_wh, body.price, body.zone, body.tif)
    row = place_order(t, claims.user_id, request, idempotency_key)
    return JSONResponse(row, status_code=201)


@router.delete("/orders/{order_id}", response_model=OrderOut)
def cancel(order_id: str, claims: UserDep, t: TradingDep) -> dict[str, Any]:
    return t.cancel(claims.user_id, order_id)


@router.get("/orders", response_model=list[OrderOut], responses=NEXT_CURSOR)
def my_orders(
    claims: UserDep,
    t: TradingDep,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[
        str | None, Query(pattern=ORDER_CURSOR_PATTERN, description=CURSOR_HELP)
    ] = None,
) -> list[dict[str, Any]]:
    """Newest first, a page at a time. The body stays a list (clients from before cursors
    read it unchanged); the next page's cursor is the `Next-Cursor` header, absent on the
    last page."""
    after = None
    if cursor is not None:
        epoch, seq, order_id = cursor.split(".", 2)
        after = (int(epoch), int(seq), order_id)
    rows = t.orders_of(claims.user_id, limit + 1, after)
    page = rows[:limit]
    if len(rows) > limit:
        last = page[-1]
        response.headers["Next-Cursor"] = f"{last['epoch']}.{last['seq']}.{last['order_id']}"
    return page
