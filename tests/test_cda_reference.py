"""The fast CDA (`Market.place`'s flat loop, `book.py`) against the CDA as first written
(`market/reference.py`): on random order streams, exactly the same trades, refusals,
statuses, depth, halts and epoch outcomes."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridtokenx.market.config import NO_BREAKER, MarketConfig, Mechanism, Wheeling
from gridtokenx.market.engine import Market
from gridtokenx.market.errors import OrderRejected
from gridtokenx.market.orders import Order, Side, TimeInForce
from gridtokenx.market.reference import ReferenceMarket

ZONED = Wheeling.from_rows([("a", "a", 0), ("b", "b", 0), ("a", "b", 300_000), ("b", "a", 100_000)])
OneOp = tuple[object, ...]


def stream(rng: random.Random, n: int, zones: list[str]) -> list[OneOp]:
    """Places (some invalid, some self-crossing), cancels, resumes and epoch ends."""
    ops: list[OneOp] = []
    now = 0
    for k in range(n):
        now += rng.choice([0, 0, 1, 500, 20_000])
        roll = rng.random()
        if roll < 0.08 and k:
            ops.append(("cancel", f"o{rng.randrange(k)}", f"u{rng.randrange(6)}"))
        elif roll < 0.10:
            ops.append(("resume",))
        elif roll < 0.12:
            ops.append(("clear",))
        else:
            price = rng.choice([1_990_000, 8_000_001]) if rng.random() < 0.03 else 0
            price = price or rng.randrange(380, 421) * 10_000 + rng.choice([0, 0, 1])
            wh = rng.choice([0, 1_000_001]) if rng.random() < 0.03 else rng.randrange(1, 3000)
            oid = f"o{rng.randrange(k)}" if k and rng.random() < 0.02 else f"o{k}"
            ops.append(
                (
                    "place",
                    oid,
                    f"u{rng.randrange(6)}",
                    rng.choice([Side.BUY, Side.SELL]),
                    wh,
                    price,
                    rng.choice(zones),
                    rng.choice([TimeInForce.GFE] * 6 + [TimeInForce.IOC, TimeInForce.FOK]),
                    now,
                )
            )
    return ops


def replay(market: Market, ops: list[OneOp]) -> list[object]:
    """Everything observable after each step: trades or the refusal, statuses, depth."""
    seen: list[object] = []
    placed: list[Order] = []
    for op in ops:
        try:
            if op[0] == "place":
                oid, owner, side, wh, price, zone, tif, now = op[1:]
                order = Order(oid, owner, side, wh, price, zone, tif)  # type: ignore[arg-type]
                seen.append(market.place(order, now))  # type: ignore[arg-type]
                placed.append(order)
            elif op[0] == "cancel":
                seen.append(market.cancel(op[1], op[2]).status)  # type: ignore[arg-type]
            elif op[0] == "resume":
                market.resume()
            else:
                outcome = market.clear_epoch()
                seen.append((outcome.trades, outcome.clearing_price, outcome.welfare_milli))
                seen.append((outcome.halted, outcome.closed_orders))
                placed = []
        except OrderRejected as exc:
            seen.append((exc.code, exc.message))
        seen.append([(o.id, o.seq, o.status, o.filled_wh) for o in placed])
        seen.append((market.halted, market.depth()))
    return seen


def config(zoned: bool, breaker_bps: int, max_open: int) -> MarketConfig:
    return MarketConfig(
        mechanism=Mechanism.CDA,
        wheeling=ZONED if zoned else Wheeling(),
        breaker_bps=breaker_bps,
        breaker_window_ms=30_000,
        max_open_orders_per_user=max_open,
    )


@pytest.mark.parametrize("zoned", [False, True])
@pytest.mark.parametrize("breaker_bps", [300, 1_000, NO_BREAKER])
@pytest.mark.parametrize("seed", range(4))
def test_long_random_streams_give_the_same_everything(
    zoned: bool, breaker_bps: int, seed: int
) -> None:
    ops = stream(random.Random(seed), 1500, ["a", "b", "c"] if zoned else ["a", "b"])
    cfg = config(zoned, breaker_bps, max_open=12)
    fast, reference = replay(Market(cfg), ops), replay(ReferenceMarket(cfg), ops)
    assert fast == reference
    trades = [s for s in fast if isinstance(s, list) and s and hasattr(s[0], "buy_id")]
    assert len(trades) > 50  # the streams do trade: the comparison is not vacuous


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32), st.booleans(), st.sampled_from([200, 1_000, NO_BREAKER]))
def test_short_random_streams_give_the_same_everything(
    seed: int, zoned: bool, breaker_bps: int
) -> None:
    ops = stream(random.Random(seed), 60, ["a", "b", "c"] if zoned else ["a"])
    cfg = config(zoned, breaker_bps, max_open=3)
    assert replay(Market(cfg), ops) == replay(ReferenceMarket(cfg), ops)


def test_a_breaker_stop_in_mid_sweep_keeps_the_trades_before_it() -> None:
    """An incoming buy sweeps three levels; the third is more than 10% above the first:
    the first two trade, the market halts, the rest of the buy is cancelled."""
    for market in (Market(config(False, 1_000, 50)), ReferenceMarket(config(False, 1_000, 50))):
        for k, price in enumerate([4_000_000, 4_300_000, 4_500_000]):
            market.place(Order(f"s{k}", f"s{k}", Side.SELL, 1000, price), 0)
        buy = Order("b", "b", Side.BUY, 3000, 5_000_000)
        trades = market.place(buy, 10)
        assert [(t.sell_id, t.price) for t in trades] == [("s0", 4_000_000), ("s1", 4_300_000)]
        assert market.halted == "price moved more than 10% within 30 s"
        assert (buy.filled_wh, buy.status.value) == (2000, "cancelled")
        assert market.depth() == {"*": {"bids": [], "asks": [(4_500_000, 1000)]}}


def test_a_sweep_is_checked_against_its_own_earlier_prices() -> None:
    """The window holds a trade at 4.00; a buy then sweeps 3.70 (7.5% below: admitted) and
    4.20, which is 5% above 4.00 but 13.5% above the 3.70 just traded: refused."""
    for market in (Market(config(False, 1_000, 50)), ReferenceMarket(config(False, 1_000, 50))):
        market.place(Order("s0", "s0", Side.SELL, 1000, 4_000_000), 0)
        market.place(Order("b0", "b0", Side.BUY, 1000, 4_000_000), 0)
        market.place(Order("s1", "s1", Side.SELL, 1000, 3_700_000), 1)
        market.place(Order("s2", "s2", Side.SELL, 1000, 4_200_000), 1)
        trades = market.place(Order("b1", "b1", Side.BUY, 2000, 4_200_000), 2)
        assert [(t.sell_id, t.price) for t in trades] == [("s1", 3_700_000)]
        assert market.halted is not None
