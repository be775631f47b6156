"""A household's cleared trades, newest first a page at a time (an admin's: every trade)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from gridtokenx.adapters import queries
from gridtokenx.api.deps import PlatformDep, UserDep
from gridtokenx.api.schemas import (
    CURSOR_HELP,
    NEXT_CURSOR,
    TRADE_CURSOR_PATTERN,
    TradeOut,
    errors,
)

router = APIRouter(
    prefix="/api/v1", tags=["trades"], responses=errors(401, 403, 413, 422, 429, 503)
)


@router.get("/trades", response_model=list[TradeOut], responses=NEXT_CURSOR)
def my_trades(
    claims: UserDep,
    platform: PlatformDep,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[
        str | None, Query(pattern=TRADE_CURSOR_PATTERN, description=CURSOR_HELP)
    ] = None,
) -> list[dict[str, Any]]:
    """The caller's trades as buyer or seller (an admin's: every trade), newest epoch first
    by (epoch, trade_id); the next page's cursor is the `Next-Cursor` header, absent on the
    last page."""
    after = None
    if cursor is not None:
        epoch, trade_id = cursor.split(".", 1)
        after = (int(epoch), trade_id)
    wallet = None if claims.role == "admin" else claims.wallet
    rows = queries.trades_of_wallet(platform.books, wallet, limit + 1, after)
    page = rows[:limit]
    if len(rows) > limit:
        response.headers["Next-Cursor"] = f"{page[-1]['epoch']}.{page[-1]['trade_id']}"
    return page
