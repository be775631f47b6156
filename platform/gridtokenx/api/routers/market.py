"""The market's public view: the current epoch, cleared epochs, the book, candles."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi import Path as PathParam

from gridtokenx.adapters import queries
from gridtokenx.api.deps import TradingDep
from gridtokenx.api.schemas import (
    CURSOR_HELP,
    CURSOR_PATTERN,
    EPOCH_MAX,
    NEXT_CURSOR,
    BookOut,
    CandleOut,
    CurrentEpochOut,
    EpochDetailOut,
    EpochOut,
    errors,
)
from gridtokenx.errors import NotFound

router = APIRouter(prefix="/api/v1/market", tags=["market"], responses=errors(413, 422, 429, 503))


@router.get("/epochs/current", response_model=CurrentEpochOut)
def current_epoch(t: TradingDep) -> dict[str, Any]:
    epoch = t.market.epoch
    ends = t.ends_at(epoch)
    return {
        "epoch": epoch,
        "ends_at": ends,
        "seconds_left": max(0.0, round(ends - t.clock(), 3)),
        "mechanism": t.config.mechanism.value,
        "halted": t.market.halted,
    }


@router.get("/epochs", response_model=list[EpochOut], responses=NEXT_CURSOR)
def list_epochs(
    t: TradingDep,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(pattern=CURSOR_PATTERN, description=CURSOR_HELP)] = None,
) -> list[dict[str, Any]]:
    """The cleared epochs, newest first by number (the primary key); the next page's cursor
    is the `Next-Cursor` header, absent on the last page."""
    rows = queries.epochs_page(t.engine, limit + 1, None if cursor is None else int(cursor))
    page = rows[:limit]
    if len(rows) > limit:
        response.headers["Next-Cursor"] = str(page[-1]["epoch"])
    return page


@router.get("/epochs/{epoch}", response_model=EpochDetailOut, responses=errors(404))
def one_epoch(
    epoch: Annotated[int, PathParam(ge=0, le=EPOCH_MAX)], t: TradingDep
) -> dict[str, Any]:
    found = t.epoch_row(epoch)
    if found is None:
        raise NotFound("no_epoch", f"epoch {epoch} has not been cleared")
    return found


@router.get("/book", response_model=BookOut)
def book(t: TradingDep) -> dict[str, Any]:
    with t.lock:
        return {"epoch": t.market.epoch, "depth": t.market.depth()}


@router.get("/candles", response_model=list[CandleOut])
def candles(t: TradingDep, limit: Annotated[int, Query(ge=1, le=500)] = 96) -> list[dict[str, Any]]:
    rows = [r for r in t.recent_epochs(limit) if r["clearing_price"] is not None]
    return [
        {"epoch": r["epoch"], "price": r["clearing_price"], "volume_wh": r["volume_wh"]}
        for r in reversed(rows)
    ]
