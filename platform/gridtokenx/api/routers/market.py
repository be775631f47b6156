"""The market's public view: the current epoch, cleared epochs, the book, candles."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi import Path as PathParam

from gridtokenx.api.deps import TradingDep
from gridtokenx.api.schemas import (
    EPOCH_MAX,
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


@router.get("/epochs", response_model=list[EpochOut])
def list_epochs(
    t: TradingDep, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[dict[str, Any]]:
    return t.recent_epochs(limit)


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
