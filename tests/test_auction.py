"""Call auctions: welfare optimality (against HiGHS), conservation, limits, determinism."""

from __future__ import annotations

import highspy
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gridtokenx.market.auction import (
    NOT_ALLOWED,
    OrderTable,
    Pricing,
    _clear_zonal,
    clear,
    wheeling_matrix,
)
from gridtokenx.market.config import Wheeling
from gridtokenx.market.orders import Order, Side

ZONES = ("a", "b", "c")


@st.composite
def epochs(draw: st.DrawFn, zones: tuple[str, ...] = ("a",)) -> list[Order]:
    n = draw(st.integers(1, 14))
    orders = []
    for k in range(n):
        orders.append(
            Order(
                id=f"o{k}",
                owner=f"u{k}",
                side=draw(st.sampled_from([Side.BUY, Side.SELL])),
                quantity_wh=draw(st.integers(1, 5_000)),
                # coarse prices make ties (and so tie-breaking) common
                price=draw(st.integers(20, 80)) * 100_000,
                zone=draw(st.sampled_from(zones)),
                seq=draw(st.integers(0, 3)) * 100 + k,
            )
        )
    return orders


@st.composite
def wheelings(draw: st.DrawFn) -> Wheeling:
    rows = []
    for source in ZONES:
        for sink in ZONES:
            choice = draw(st.integers(0, 3))
            if source != sink and choice == 0:
                continue  # pair not allowed
            rows.append((source, sink, draw(st.integers(0, 10)) * 100_000))
    return Wheeling.from_rows(rows)


def highs_welfare(table: OrderTable, w: np.ndarray) -> float:
    """Max sum q_bs (bid - ask - wheel) s.t. order quantities: an independent LP."""
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    buys = np.flatnonzero(table.is_buy).tolist()
    sells = np.flatnonzero(~table.is_buy).tolist()
    cols = []
    for b in buys:
        for s in sells:
            rate = w[table.zone[s], table.zone[b]]
            if rate == NOT_ALLOWED:
                continue
            surplus = int(table.price[b] - table.price[s] - rate)
            if surplus >= 0:
                cols.append((b, s, surplus))
    if not cols:
        return 0.0
    inf = highspy.kHighsInf
    h.addCols(
        len(cols),
        np.array([-c[2] for c in cols], dtype=np.float64),
        np.zeros(len(cols)),
        np.full(len(cols), inf),
        0,
        np.array([], np.int32),
        np.array([], np.int32),
        np.array([]),
    )
    for row in buys + sells:
        idx = [k for k, c in enumerate(cols) if row in (c[0], c[1])]
        if idx:
            h.addRow(
                -inf, float(table.qty[row]), len(idx), np.array(idx, np.int32), np.ones(len(idx))
            )
    h.run()
    return -float(h.getInfo().objective_function_value)


def check_invariants(table: OrderTable, w: np.ndarray, result) -> None:  # type: ignore[no-untyped-def]
    # energy: each order's fill equals what its trades carry, never more than it asked
    per_order = np.zeros(len(table), np.int64)
    np.add.at(per_order, result.trade_buy, result.trade_qty)
    np.add.at(per_order, result.trade_sell, result.trade_qty)
    assert (per_order == result.filled).all()
    assert (result.filled <= table.qty).all()
    assert (result.trade_qty > 0).all()
    # every trade respects both limits and the wheeling of its zone pair
    assert table.is_buy[result.trade_buy].all() and not table.is_buy[result.trade_sell].any()
    rates = w[table.zone[result.trade_sell], table.zone[result.trade_buy]]
    assert (rates != NOT_ALLOWED).all()
    assert (result.trade_wheeling == rates).all()
    assert (result.trade_price >= table.price[result.trade_sell]).all()
    assert (result.trade_price + result.trade_wheeling <= table.price[result.trade_buy]).all()


@settings(max_examples=150, deadline=None)
@given(epochs(ZONES), wheelings(), st.sampled_from(list(Pricing)))
def test_welfare_equals_highs_optimum(
    orders: list[Order], wheel: Wheeling, pricing: Pricing
) -> None:
    table = OrderTable.from_orders(orders)
    w = wheeling_matrix(wheel, table.zones)
    result = clear(table, w, pricing)
    check_invariants(table, w, result)
    assert abs(result.welfare_milli - highs_welfare(table, w)) <= 1e-6 * max(
        1, result.welfare_milli
    )


@settings(max_examples=150, deadline=None)
@given(epochs(), st.integers(0, 5))
def test_vectorised_pool_equals_general_solver(orders: list[Order], rate: int) -> None:
    table = OrderTable.from_orders(orders)
    w = np.full((1, 1), rate * 100_000, np.int64)
    fast = clear(table, w, Pricing.UNIFORM)
    general = _clear_zonal(
        table, np.flatnonzero(table.is_buy), np.flatnonzero(~table.is_buy), w, Pricing.UNIFORM
    )
    assert fast.volume_wh == general.volume_wh
    assert fast.clearing_price == general.clearing_price
    assert (fast.filled == general.filled).all()
    assert fast.welfare_milli == general.welfare_milli


@settings(max_examples=100, deadline=None)
@given(epochs(ZONES), wheelings())
def test_uniform_price_is_one_per_zone(orders: list[Order], wheel: Wheeling) -> None:
    table = OrderTable.from_orders(orders)
    w = wheeling_matrix(wheel, table.zones)
    result = clear(table, w, Pricing.UNIFORM)
    for trade in range(len(result.trade_qty)):
        zone = table.zones[table.zone[result.trade_sell[trade]]]
        assert result.trade_price[trade] == result.zone_prices[zone]
    # a buyer zone pays one price, whichever zone the energy came from
    paid: dict[int, set[int]] = {}
    for b, p, wh in zip(result.trade_buy, result.trade_price, result.trade_wheeling, strict=True):
        paid.setdefault(int(table.zone[b]), set()).add(int(p + wh))
    assert all(len(prices) == 1 for prices in paid.values())


@settings(max_examples=60, deadline=None)
@given(epochs(ZONES), wheelings(), st.randoms(use_true_random=False))
def test_same_orders_same_trades_in_any_input_order(
    orders: list[Order], wheel: Wheeling, rnd
) -> None:  # type: ignore[no-untyped-def]
    def trades(batch: list[Order]) -> list[tuple[str, str, int, int]]:
        table = OrderTable.from_orders(batch)
        r = clear(table, wheeling_matrix(wheel, table.zones), Pricing.UNIFORM)
        return sorted(
            (batch[b].id, batch[s].id, int(q), int(p))
            for b, s, q, p in zip(
                r.trade_buy, r.trade_sell, r.trade_qty, r.trade_price, strict=True
            )
        )

    shuffled = list(orders)
    rnd.shuffle(shuffled)
    assert trades(orders) == trades(shuffled)


def order(oid: str, side: Side, kwh: float, thb: float, seq: int, zone: str = "a") -> Order:
    return Order(oid, oid, side, int(kwh * 1000), round(thb * 1_000_000), zone, seq=seq)


def test_classic_midpoint_rule() -> None:
    orders = [
        order("b1", Side.BUY, 1, 6.0, 1),
        order("b2", Side.BUY, 1, 5.0, 2),
        order("s1", Side.SELL, 1, 3.0, 3),
        order("s2", Side.SELL, 1, 4.0, 4),
        order("s3", Side.SELL, 1, 5.5, 5),
    ]
    table = OrderTable.from_orders(orders)
    r = clear(table, wheeling_matrix(Wheeling(), table.zones), Pricing.UNIFORM)
    # accepted: b1,b2 / s1,s2. Interval [max(4.0, none), min(5.0, 5.5)] -> 4.5
    assert r.volume_wh == 2000
    assert r.clearing_price == 4_500_000
    assert r.welfare_milli == 1000 * (6_000_000 - 3_000_000) + 1000 * (5_000_000 - 4_000_000)


def test_time_priority_at_the_margin() -> None:
    orders = [
        order("b1", Side.BUY, 1, 5.0, 1),
        order("s_late", Side.SELL, 1, 3.0, 9),
        order("s_early", Side.SELL, 1, 3.0, 2),
    ]
    table = OrderTable.from_orders(orders)
    r = clear(table, wheeling_matrix(Wheeling(), table.zones), Pricing.UNIFORM)
    assert list(r.filled) == [1000, 0, 1000]


def test_pay_as_bid_buyer_pays_own_limit() -> None:
    orders = [
        order("b1", Side.BUY, 1, 6.0, 1),
        order("b2", Side.BUY, 1, 5.0, 2),
        order("s1", Side.SELL, 2, 3.0, 3),
    ]
    table = OrderTable.from_orders(orders)
    r = clear(table, wheeling_matrix(Wheeling(), table.zones), Pricing.PAY_AS_BID)
    assert sorted(r.trade_price.tolist()) == [5_000_000, 6_000_000]
    assert r.clearing_price is None


def test_cross_zone_trade_needs_limit_to_cover_wheeling() -> None:
    wheel = Wheeling.from_rows([("a", "b", 1_000_000), ("b", "a", 1_000_000)])
    orders = [order("b1", Side.BUY, 1, 4.5, 1, "b"), order("s1", Side.SELL, 1, 4.0, 2, "a")]
    table = OrderTable.from_orders(orders)
    r = clear(table, wheeling_matrix(wheel, table.zones), Pricing.UNIFORM)
    assert r.volume_wh == 0
    orders[0] = order("b1", Side.BUY, 1, 5.0, 1, "b")
    table = OrderTable.from_orders(orders)
    r = clear(table, wheeling_matrix(wheel, table.zones), Pricing.UNIFORM)
    assert r.volume_wh == 1000
    assert r.trade_price.tolist() == [4_000_000]
    assert r.trade_wheeling.tolist() == [1_000_000]
