"""The fast CDA path's own pieces: the breaker's solved price range, and the bench's
order stream traded exactly as the reference CDA trades it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gridtokenx.market.breaker import PriceBand
from gridtokenx.market.config import NO_BREAKER, MarketConfig, Mechanism
from gridtokenx.market.engine import Market
from gridtokenx.market.orders import Order, Side
from gridtokenx.market.reference import ReferenceMarket

prices = st.integers(1, 9_000_000)


@settings(max_examples=400, deadline=None)
@given(prices, prices, prices, st.sampled_from([-1, 0, 1, 7, 300, 1_000, 10_000, NO_BREAKER]))
def test_limits_admit_exactly_what_the_products_admit(lo: int, hi: int, at: int, bps: int) -> None:
    top, bottom = PriceBand(bps, 1_000).limits(lo, hi)
    refused = (at - lo) * 10_000 > bps * lo or (hi - at) * 10_000 > bps * hi
    assert (bottom <= at <= top) is not refused


def test_limits_at_the_edges() -> None:
    band = PriceBand(1_000, 1_000)  # 10 %
    assert band.limits(4_000_000, 4_000_000) == (4_400_000, 3_600_000)
    assert band.limits(3_333_333, 3_333_337) == (3_666_666, 3_000_004)


ops = st.lists(
    st.tuples(st.sampled_from([0, 0, 0, 1, 400, 1_500]), prices, prices, st.booleans()),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops, st.sampled_from([-1, 0, 500, 10_000]))
def test_the_summary_and_skipping_covered_records_change_no_answer(
    steps: list[tuple[int, int, int, bool]], bps: int
) -> None:
    """Two bands see the same trades: one records every run of prices, the other skips
    those `covers` says change nothing. Both give every answer a brute-force window over
    all trades gives, and their summaries (lo, hi, top, bottom) match the deques'."""
    every, skipping = PriceBand(bps, 1_000), PriceBand(bps, 1_000)
    history: list[tuple[int, int]] = []
    now = 0
    for dt, a, b, single in steps:
        now += dt
        seen = [(p, t) for t, p in history if t >= now - 1_000]
        expected = (min(seen)[0], max(seen)[0]) if seen else None
        for band in (every, skipping):
            assert band.window(now) == expected
            if expected is not None:
                assert (band.lo, band.hi) == expected
                assert (band.top, band.bottom) == band.limits(*expected)
                assert band.fresh_until >= now - 1_000
        if single:
            admitted = every.admit(a, now)
            assert skipping.admit(a, now) is admitted
            if admitted:
                history.append((now, a))
        else:
            low, high = min(a, b), max(a, b)
            every.record(now, low, high)
            if not skipping.covers(now, low, high):
                skipping.record(now, low, high)
            history += [(now, low), (now, high)]
    assert every.window(now + 1) == skipping.window(now + 1)


def test_covers() -> None:
    band = PriceBand(1_000, 1_000)
    assert not band.covers(0, 4_000_000, 4_000_000)  # nothing recorded: it must be
    band.record(5, 4_000_000, 4_200_000)
    assert band.covers(5, 4_000_000, 4_200_000)
    assert band.covers(5, 4_100_000, 4_100_000)
    assert not band.covers(5, 3_999_999, 4_100_000)  # a new low
    assert not band.covers(5, 4_100_000, 4_200_001)  # a new high
    assert not band.covers(6, 4_100_000, 4_100_000)  # would outlive the fronts


def bench_stream(n: int, seed: int) -> list[Order]:
    """The orders of `gridtokenx bench cda` (bench.cda), n of them."""
    rng = np.random.default_rng(seed)
    sides = (rng.random(n) < 0.5).tolist()
    price = (rng.integers(480, 521, n) * 10_000).tolist()
    qty = rng.integers(100, 10_001, n).tolist()
    return [
        Order(str(k), f"u{k}", Side.BUY if sides[k] else Side.SELL, qty[k], price[k])
        for k in range(n)
    ]


def test_the_bench_stream_trades_as_the_reference_does() -> None:
    cfg = MarketConfig(mechanism=Mechanism.CDA, breaker_bps=10_000, max_open_orders_per_user=10**9)
    fast, reference = Market(cfg), ReferenceMarket(cfg)
    fast_trades = [t for o in bench_stream(6_000, 7) for t in fast.place(o, 0)]
    ref_trades = [t for o in bench_stream(6_000, 7) for t in reference.place(o, 0)]
    assert fast_trades == ref_trades
    assert len(fast_trades) == 4_695
    assert fast.depth() == reference.depth()
    assert fast.clear_epoch().closed_orders == reference.clear_epoch().closed_orders


def test_new_parameters_apply_to_the_next_order() -> None:
    """`Trading.set_parameters` replaces `market.config`: the fee and the breaker's limit
    the hot path keeps follow it (they were once read only when the market was made)."""
    market = Market(MarketConfig(mechanism=Mechanism.CDA, fee_bps=100, breaker_bps=1_000))
    market.place(Order("s0", "s0", Side.SELL, 1000, 4_000_000), 0)
    market.config = replace(market.config, fee_bps=50)
    (trade,) = market.place(Order("b0", "b0", Side.BUY, 1000, 4_000_000), 0)
    assert (trade.fee_bps, trade.price) == (50, 4_000_000)
    market.place(Order("s1", "s1", Side.SELL, 1000, 4_500_000), 1)
    market.config = replace(market.config, breaker_bps=2_000)  # 12.5% above 4.00 now passes
    (trade,) = market.place(Order("b1", "b1", Side.BUY, 1000, 4_500_000), 2)
    assert trade.price == 4_500_000 and market.halted is None
    market.place(Order("s2", "s2", Side.SELL, 1000, 5_000_000), 3)
    market.config = replace(market.config, breaker_bps=1_000)  # 25% above 4.00: refused
    assert market.place(Order("b2", "b2", Side.BUY, 1000, 5_000_000), 4) == []
    assert market.halted == "price moved more than 10% within 60 s"
