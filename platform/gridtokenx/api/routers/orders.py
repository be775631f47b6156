"""A household's orders: place (with escrow; honours Idempotency-Key), cancel, list."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from gridtokenx.api.deps import TraderDep, TradingDep, UserDep
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
async def place(
    body: OrderIn,
    claims: TraderDep,
    t: TradingDep,
    idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
) -> JSONResponse:
    """On the event loop: the placement waits for its group commit without a thread of its
    own. With an Idempotency-Key the key's claim reads the database first: in a thread."""
    if claims.role not in ("consumer", "prosumer", "admin"):
        raise Forbidden("wrong_role", "only households trade")
    request = OrderRequest(body.side, body.quantity_wh, body.price, body.zone, body.tif)
    if idempotency_key:
        row = await run_in_threadpool(
            place_order, t, claims.user_id, request, idempotency_key, family=claims.family
        )
    else:
        row = await t.place_async(
            claims.user_id,
            body.side,
            body.quantity_wh,
            body.price,
            body.zone,
            body.tif,
            family=claims.family,
        )
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
