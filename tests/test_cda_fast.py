"""The fast CDA path's own pieces: the breaker's solved price range, and the bench's
order stream traded exactly as the reference CDA trades it."""

from __future__ import annotations

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
    band = PriceBand(bps, 1_000)
    top, bottom = band.limits(lo, hi)
    refused = (at - lo) * 10_000 > bps * lo or (hi - at) * 10_000 > bps * hi
    assert (bottom <= at <= top) is not refused
    assert (band.lo, band.hi, band.top, band.bottom) == (lo, hi, top, bottom)


def test_limits_at_the_edges() -> None:
    band = PriceBand(1_000, 1_000)  # 10 %
    assert band.limits(4_000_000, 4_000_000) == (4_400_000, 3_600_000)
    assert band.limits(3_333_333, 3_333_337) == (3_666_666, 3_000_004)


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
