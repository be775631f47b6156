"""Grid-aware clearing: do an epoch's trades fit the feeder? Curtail those that do not.

An epoch's trades become flows: the seller's household injects the traded energy as
average power over the epoch, the buyer's draws it, on top of the households' profile for
that quarter hour. The AC power flow checks voltages (EN 50160, 0.90-1.10 p.u.) and line
and transformer loading (<= 100%). While a limit is broken, the trade whose removal
relieves the worst violation most is curtailed, just as much as needed (bisection on its
quantity), and the flow is solved again. All candidate removals of a round are one batch
calculation.

The market engine never imports this: the epoch pipeline passes trades in and gets
curtailments out (plain data, integer Wh).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridtokenx.sim.grid import F64, STEP_S, Grid
from gridtokenx.sim.powerflow import LOADING_LIMIT, VOLTAGE_LIMITS, BatchSolver, FlowResult


@dataclass(frozen=True)
class TradeFlow:
    """A cleared trade between two households' meters, in Wh over one epoch."""

    trade_id: str
    seller: str  # meter id of the selling household
    buyer: str
    quantity_wh: int


@dataclass(frozen=True)
class Curtailment:
    trade_id: str
    curtailed_wh: int
    remaining_wh: int
    reason: str  # e.g. "overvoltage 1.112 p.u. at bus 31"


@dataclass(frozen=True)
class GridCheck:
    before: FlowResult
    after: FlowResult
    curtailments: list[Curtailment]
    limits: tuple[float, float] = VOLTAGE_LIMITS
    loading: float = LOADING_LIMIT

    @property
    def within_limits(self) -> bool:
        return not bool(self.after.violations(self.limits, self.loading).any())


def _severity(flow: FlowResult, limits: tuple[float, float], loading: float) -> F64:
    """Per scenario: how far the worst limit is exceeded (0 when within limits), in p.u.
    of voltage or fractions of rated loading."""
    over_v = np.maximum(flow.v_pu - limits[1], 0).max(axis=1)
    under_v = np.maximum(limits[0] - flow.v_pu, 0).max(axis=1)
    lines = np.concatenate([flow.line_loading, flow.trafo_loading], axis=1)
    over_i = np.maximum(lines - loading, 0).max(axis=1) / 100
    return np.asarray(np.maximum(np.maximum(over_v, under_v), over_i), dtype=np.float64)


def _reason(flow: FlowResult, grid: Grid, limits: tuple[float, float], loading: float) -> str:
    v = flow.v_pu[0]
    if v.max() > limits[1]:
        bus = grid.bus_index[int(v.argmax())]
        return f"overvoltage {v.max():.3f} p.u. at bus {bus}"
    if v.min() < limits[0]:
        bus = grid.bus_index[int(v.argmin())]
        return f"undervoltage {v.min():.3f} p.u. at bus {bus}"
    if flow.trafo_loading.size and flow.trafo_loading[0].max() > loading:
        return f"transformer loading {flow.trafo_loading[0].max():.0f}%"
    line = int(flow.line_loading[0].argmax())
    return f"line {grid.line_index[line]} loading {flow.line_loading[0].max():.0f}%"


class GridChecker:
    def __init__(
        self,
        grid: Grid,
        limits: tuple[float, float] = VOLTAGE_LIMITS,
        loading: float = LOADING_LIMIT,
    ) -> None:
        self.grid = grid
        self.solver = BatchSolver(grid)
        self.limits = limits
        self.loading = loading
        self.load_of = {h.meter_id: h.load for h in grid.households}

    def _scenarios(self, step: int, trades: list[TradeFlow], scales: F64) -> FlowResult:
        """Solve one scenario per row of `scales` (trade quantities as fractions)."""
        n = scales.shape[0]
        base_p, base_q, base_sgen = self.grid.injections(step, 1)
        load_p = np.repeat(base_p, n, axis=0)
        for k, t in enumerate(trades):
            watts = t.quantity_wh * 3600 / STEP_S * scales[:, k]
            seller, buyer = self.load_of.get(t.seller), self.load_of.get(t.buyer)
            if seller is None or buyer is None:
                raise KeyError(f"trade {t.trade_id}: a household without a load element")
            load_p[:, seller] -= watts  # injection: a negative load
            load_p[:, buyer] += watts
        load_q = np.repeat(base_q, n, axis=0)
        sgen_p = np.repeat(base_sgen, n, axis=0)
        return self.solver.solve(load_p, load_q, sgen_p, threads=1)

    def check(self, step: int, trades: list[TradeFlow], max_rounds: int = 50) -> GridCheck:
        """Check an epoch's trades at a step of the year; curtail until within limits."""
        scale = np.ones(len(trades))
        before = self._scenarios(step, trades, scale[None, :])
        flow = before
        reasons: dict[int, str] = {}
        for _ in range(max_rounds):
            worst = float(_severity(flow, self.limits, self.loading)[0])
            if worst <= 0 or not scale.any():
                break
            # every trade still flowing, removed one at a time: one batch
            candidates = [k for k in range(len(trades)) if scale[k] > 0]
            rows = np.repeat(scale[None, :], len(candidates), axis=0)
            for row, k in enumerate(candidates):
                rows[row, k] = 0.0
            relief = worst - _severity(
                self._scenarios(step, trades, rows), self.limits, self.loading
            )
            best = candidates[int(np.argmax(relief))]  # ties: the earliest trade
            if relief.max() <= 0:
                break  # no trade worsens it: the base load itself breaks the limit
            reasons.setdefault(best, _reason(flow, self.grid, self.limits, self.loading))
            # keep as much of it as the limits allow (bisection on its quantity)
            low, high = 0.0, scale[best]
            for _ in range(12):
                mid = (low + high) / 2
                trial = scale.copy()
                trial[best] = mid
                severity = _severity(
                    self._scenarios(step, trades, trial[None, :]), self.limits, self.loading
                )[0]
                if severity <= 0:
                    low = mid
                else:
                    high = mid
            scale[best] = low
            flow = self._scenarios(step, trades, scale[None, :])
        curtailments = []
        for k, t in enumerate(trades):
            kept = int(t.quantity_wh * scale[k])  # floor: never more than the grid allows
            if kept < t.quantity_wh:
                curtailments.append(
                    Curtailment(t.trade_id, t.quantity_wh - kept, kept, reasons.get(k, "grid"))
                )
        kept_scale = np.array(
            [
                int(t.quantity_wh * scale[k]) / t.quantity_wh if t.quantity_wh else 0.0
                for k, t in enumerate(trades)
            ]
        )
        # nothing curtailed: the very flow already solved (the same inputs, the same result)
        unchanged = not trades or bool((kept_scale == 1.0).all())
        after = before if unchanged else self._scenarios(step, trades, kept_scale[None, :])
        return GridCheck(before, after, curtailments, self.limits, self.loading)
