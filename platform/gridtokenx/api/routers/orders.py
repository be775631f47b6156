"""A household's orders: place (with escrow; honours Idempotency-Key), cancel, list."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse
from sqlalchemy import insert, select

from gridtokenx.api.deps import PlatformDep, TradingDep, UserDep
from gridtokenx.api.schemas import OrderIn, OrderOut, errors
from gridtokenx.errors import Forbidden
from gridtokenx.tables import idempotency

router = APIRouter(
    prefix="/api/v1", tags=["orders"], responses=errors(401, 403, 409, 413, 422, 429, 503)
)


@router.post("/orders", status_code=201, response_model=OrderOut)
def place(
    body: OrderIn,
    claims: UserDep,
    t: TradingDep,
    platform: PlatformDep,
    idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
) -> JSONResponse:
    # the Idempotency-Key block is platform-core's (issue 12 item 5), moved here as it was
    if idempotency_key:
        with platform.books.connect() as c:
            seen = c.execute(
                select(idempotency).where(
                    idempotency.c.user_id == claims.user_id,
                    idempotency.c.key == idempotency_key,
                )
            ).first()
        if seen is not None:
            return JSONResponse(json.loads(seen.body), status_code=seen.status)
    if claims.role not in ("consumer", "prosumer", "admin"):
        raise Forbidden("wrong_role", "only households trade")
    row = t.place(claims.user_id, body.side, body.quantity_wh, body.price, body.zone, body.tif)
    if idempotency_key:
        with platform.books.begin() as c:
            c.execute(
                insert(idempotency).values(
                    user_id=claims.user_id,
                    key=idempotency_key,
                    status=201,
                    body=json.dumps(row),
                )
            )
    return JSONResponse(row, status_code=201)


@router.delete("/orders/{order_id}", response_model=OrderOut)
def cancel(order_id: str, claims: UserDep, t: TradingDep) -> dict[str, Any]:
    return t.cancel(claims.user_id, order_id)


@router.get("/orders", response_model=list[OrderOut])
def my_orders(
    claims: UserDep, t: TradingDep, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> list[dict[str, Any]]:
    return t.orders_of(claims.user_id, limit)
