"""The feeder as the platform sees it: its topology, the power flow of the last cleared
epoch, curtailments, and an SVG map drawn from the buses' coordinates.

The epoch pipeline calls `curtail` between clearing and settlement: trades between two
households with meters on this feeder become flows (`gridtokenx.sim.gridcheck`) and are
cut back while a voltage or loading limit is broken; the rest settle as cleared."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gridtokenx.market.trades import Trade
from gridtokenx.sim.grid import STEP_S, Grid
from gridtokenx.sim.gridcheck import GridChecker, TradeFlow


class GridView:
    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self.checker = GridChecker(grid)
        self.lock = threading.Lock()
        self.state: dict[str, Any] = {}
        self.curtailments: list[dict[str, Any]] = []
        net = grid.net
        self.buses = [int(b) for b in net.bus.index]
        coords = {}
        for h in grid.households:
            coords[h.bus] = (h.x, h.y)
        from gridtokenx.sim.grid import _coordinates

        self.xy = {b: coords.get(b) or _coordinates(net, b) for b in self.buses}
        self.lines = [
            (int(net.line.at[i, "from_bus"]), int(net.line.at[i, "to_bus"])) for i in net.line.index
        ]

    def topology(self) -> dict[str, Any]:
        return {
            "code": self.grid.code,
            "buses": [{"bus": b, "x": self.xy[b][0], "y": self.xy[b][1]} for b in self.buses],
            "lines": [{"from": a, "to": b} for a, b in self.lines],
            "households": [
                {"meter_id": h.meter_id, "bus": h.bus, "zone": h.zone} for h in self.grid.households
            ],
        }

    def step_of(self, epoch_end_s: float) -> int:
        return int(epoch_end_s // STEP_S) % self.grid.steps

    def curtail(
        self, epoch: int, step: int, trades: Sequence[Trade], meter_of: Mapping[str, str]
    ) -> list[int]:
        """Remaining Wh of each trade after the grid check (trades off the feeder pass)."""
        known = {h.meter_id for h in self.grid.households}
        flows, where = [], []
        for k, t in enumerate(trades):
            seller, buyer = meter_of.get(t.seller), meter_of.get(t.buyer)
            if seller in known and buyer in known:
                flows.append(TradeFlow(str(k), seller, buyer, t.quantity_wh))
                where.append(k)
        remaining = [t.quantity_wh for t in trades]
        check = self.checker.check(step, flows)
        for c in check.curtailments:
            remaining[int(c.trade_id)] = c.remaining_wh
        after = check.after
        with self.lock:
            self.state = {
                "epoch": epoch,
                "step": step,
                "v_pu": {
                    b: round(float(v), 4) for b, v in zip(self.buses, after.v_pu[0], strict=False)
                },
                "line_loading_pct": [round(float(x), 1) for x in after.line_loading[0]],
                "violations_before": bool(
                    check.before.violations(self.checker.limits, self.checker.loading)[0]
                ),
                "violations_after": bool(
                    after.violations(self.checker.limits, self.checker.loading)[0]
                ),
                "checked_trades": len(flows),
            }
            for c in check.curtailments:
                self.curtailments.append(
                    {
                        "epoch": epoch,
                        "trade": int(c.trade_id),
                        "curtailed_wh": c.curtailed_wh,
                        "remaining_wh": c.remaining_wh,
                        "reason": c.reason,
                    }
                )
            self.curtailments = self.curtailments[-500:]
        return remaining

    def svg(self) -> str:
        """The feeder drawn from bus coordinates; buses coloured by the last voltages."""
        xs = np.array([self.xy[b][0] for b in self.buses], dtype=float)
        ys = np.array([self.xy[b][1] for b in self.buses], dtype=float)
        if not len(xs) or (np.ptp(xs) == 0 and np.ptp(ys) == 0):
            return '<p class="muted" id="grid-map">This grid has no coordinates.</p>'
        w, h, pad = 600.0, 420.0, 15.0
        sx = (w - 2 * pad) / (np.ptp(xs) or 1)
        sy = (h - 2 * pad) / (np.ptp(ys) or 1)
        scale = min(sx, sy)

        def at(b: int) -> tuple[float, float]:
            x, y = self.xy[b]
            return pad + (x - xs.min()) * scale, h - pad - (y - ys.min()) * scale

        with self.lock:
            v = dict(self.state.get("v_pu", {}))
            loading = list(self.state.get("line_loading_pct", []))
        parts = []
        for k, (a, b) in enumerate(self.lines):
            (x1, y1), (x2, y2) = at(a), at(b)
            load = loading[k] if k < len(loading) else 0.0
            colour = "#c0392b" if load > 100 else "#e67e22" if load > 80 else "#7f8c8d"
            parts.append(
                f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
                f'stroke="{colour}" stroke-width="1.5"><title>line {k}: {load} %</title></line>'
            )
        for b in self.buses:
            x, y = at(b)
            volt = v.get(b)
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{_colour(volt)}">'
                f"<title>bus {b}: {volt} p.u.</title></circle>"
            )
        head = f'<svg id="grid-map" viewBox="0 0 {w:.0f} {h:.0f}" role="img" aria-label="feeder">'
        return head + "".join(parts) + "</svg>"


def _colour(volt: float | None) -> str:
    """Green within 0.95-1.05 p.u., orange within the EN 50160 band, red outside it."""
    if volt is None:
        return "#bbb"
    if not 0.9 <= volt <= 1.1:
        return "#c0392b"
    return "#27ae60" if 0.95 <= volt <= 1.05 else "#e67e22"
