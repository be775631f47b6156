"""Grid-aware clearing: trades that break the feeder's limits are curtailed, just enough."""

from __future__ import annotations

import pytest

from gridtokenx.sim.grid import Grid, load_simbench
from gridtokenx.sim.gridcheck import GridChecker, TradeFlow

pytestmark = pytest.mark.slow
NOON = 96 * 160 + 44  # a June noon of the SimBench year


@pytest.fixture(scope="module")
def grid() -> Grid:
    return load_simbench()


def far_and_near(grid: Grid, checker: GridChecker) -> tuple[list[str], list[str]]:
    """Households by their voltage at noon: the far end of the feeder first."""
    v = checker.solver.solve_profile(NOON, 1).v_pu[0]
    position = {bus: k for k, bus in enumerate(grid.net.bus.index)}
    ordered = sorted(grid.households, key=lambda h: -v[position[h.bus]])
    return [h.meter_id for h in ordered[:4]], [h.meter_id for h in ordered[-4:]]


def big_midday_trades(grid: Grid, checker: GridChecker) -> list[TradeFlow]:
    far, near = far_and_near(grid, checker)
    # 15 kWh in a quarter hour is 60 kW from one household: far beyond the feeder
    trades = [TradeFlow(f"t{k}", far[k], near[k], 15_000) for k in range(4)]
    trades.append(TradeFlow("small", far[0], near[1], 100))
    return trades


def test_overload_is_detected_and_resolved_by_curtailment(grid: Grid) -> None:
    checker = GridChecker(grid)
    trades = big_midday_trades(grid, checker)
    result = checker.check(NOON, trades)
    assert result.before.violations().all()
    assert result.within_limits  # the limits hold afterwards
    assert result.after.line_loading.max() <= 100.0 and result.after.v_pu.max() <= 1.10
    by_id = {c.trade_id: c for c in result.curtailments}
    assert by_id and "small" not in by_id  # a harmless trade keeps all its energy
    for c in result.curtailments:
        quantity = next(t.quantity_wh for t in trades if t.trade_id == c.trade_id)
        assert c.curtailed_wh + c.remaining_wh == quantity and c.curtailed_wh > 0
        assert "loading" in c.reason or "voltage" in c.reason
    # just enough: the kept trades fit, and 2% more of a partly curtailed one does not
    kept = [
        TradeFlow(
            t.trade_id,
            t.seller,
            t.buyer,
            by_id[t.trade_id].remaining_wh if t.trade_id in by_id else t.quantity_wh,
        )
        for t in trades
    ]
    assert not checker.check(NOON, kept).before.violations().any()
    partial = next(c for c in result.curtailments if c.remaining_wh > 0)
    more = [
        TradeFlow(t.trade_id, t.seller, t.buyer, t.quantity_wh + 300)
        if t.trade_id == partial.trade_id
        else t
        for t in kept
    ]
    assert checker.check(NOON, more).before.violations().any()


def test_overvoltage_reason_with_tight_voltage_limits(grid: Grid) -> None:
    checker = GridChecker(grid, limits=(0.90, 1.03), loading=10_000)
    result = checker.check(NOON, big_midday_trades(grid, checker))
    assert result.within_limits and result.after.v_pu.max() <= 1.03
    assert any(c.reason.startswith("overvoltage") for c in result.curtailments)


def test_trades_that_fit_are_untouched_and_checks_are_deterministic(grid: Grid) -> None:
    checker = GridChecker(grid)
    far, near = far_and_near(grid, checker)
    small = [TradeFlow(f"s{k}", far[k], near[k], 200) for k in range(4)]
    result = checker.check(NOON, small)
    assert result.within_limits and result.curtailments == []
    big = big_midday_trades(grid, checker)
    assert checker.check(NOON, big).curtailments == checker.check(NOON, big).curtailments
