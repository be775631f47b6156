"""The feeder's grid view (with `platform run --grid CODE`): topology, the last power flow,
curtailments."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from gridtokenx.adapters.gridview import GridView
from gridtokenx.api.deps import TradingDep
from gridtokenx.api.schemas import GridStateOut, TopologyOut, errors
from gridtokenx.errors import NotFound

router = APIRouter(prefix="/api/v1/grid", tags=["grid"], responses=errors(404, 413, 422, 429, 503))


def get_grid(t: TradingDep) -> GridView:
    view: GridView | None = t.grid
    if view is None:
        raise NotFound("no_grid", "no grid model is configured (platform run --grid)")
    return view


GridDep = Annotated[GridView, Depends(get_grid)]


@router.get("/topology", response_model=TopologyOut)
def grid_topology(view: GridDep) -> dict[str, Any]:
    return view.topology()


@router.get("/state", response_model=GridStateOut)
def grid_state(view: GridDep) -> dict[str, Any]:
    with view.lock:
        return {k: v for k, v in view.state.items()} or {"epoch": None}


@router.get("/curtailments")
def grid_curtailments(
    view: GridDep, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> list[dict[str, Any]]:
    with view.lock:
        return list(reversed(view.curtailments[-limit:]))
