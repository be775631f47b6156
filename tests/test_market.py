"""The Market: validation codes, cancels, CDA matching, FOK/IOC, breakers, conservation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridtokenx.market.config import MarketConfig, Mechanism, Wheeling
from gridtokenx.market.engine import Market, Trade
from gridtokenx.market.errors import OrderRejected
from gridtokenx.market.orders import Order, OrderStatus, Side, TimeInForce

BUY, SELL = Side.BUY, Side.SELL


def o(
    oid: str,
    side: Side,
    wh: int,
    price_thb: float,
    owner: str | None = None,
    zone: str = "default",
    tif: TimeInForce = TimeInForce.GFE,
) -> Order:
    return Order(oid, owner or oid, side, wh, round(price_thb * 1_000_000), zone, tif)


def market(mechanism: Mechanism = Mechanism.CDA, **kw: object) -> Market:
    return Market(MarketConfig(mechanism=mechanism, **kw))  # type: ignore[arg-type]


def rejected(m: Market, order: Order) -> str:
    with pytest.raises(OrderRejected) as err:
        m.place(order)
    return err.value.code


@pytest.mark.parametrize("mechanism", list(Mechanism))
def test_validation_codes(mechanism: Mechanism) -> None:
    m = market(mechanism, max_open_orders_per_user=2)
    assert rejected(m, o("a", BUY, 0, 4)) == "quantity_not_positive"
    assert rejected(m, o("a", BUY, 1_000_001, 4)) == "quantity_too_large"
    assert rejected(m, o("a", BUY, 1000, 1.99)) == "price_out_of_bounds"
    assert rejected(m, o("a", BUY, 1000, 8.01)) == "price_out_of_bounds"
    m.place(o("a", BUY, 1000, 4, owner="u"))
    assert rejected(m, o("a", BUY, 1000, 4, owner="v")) == "duplicate_order_id"
    m.place(o("b", BUY, 1000, 3, owner="u"))
    assert rejected(m, o("c", BUY, 1000, 3, owner="u")) == "too_many_open_orders"
    zoned = market(mechanism, wheeling=Wheeling.from_rows([("z1", "z1", 0)]))
    assert rejected(zoned, o("a", BUY, 1000, 4, zone="elsewhere")) == "unknown_zone"


@pytest.mark.parametrize("mechanism", list(Mechanism))
def test_self_trade_is_refused_but_non_crossing_both_sides_is_fine(mechanism: Mechanism) -> None:
    m = market(mechanism)
    m.place(o("s", SELL, 1000, 4, owner="u"))
    assert rejected(m, o("b", BUY, 1000, 4, owner="u")) == "self_trade"
    m.place(o("b2", BUY, 1000, 3.99, owner="u"))  # cannot cross its own sell: allowed
    outcome = m.clear_epoch()
    assert outcome.trades == []


def test_rejection_changes_nothing() -> None:
    m = market(Mechanism.UNIFORM)
    m.place(o("s", SELL, 1000, 3))
    with pytest.raises(OrderRejected):
        m.place(o("s", BUY, 1000, 5))
    assert m.order("s") is not None and m.order("s").side is SELL  # type: ignore[union-attr]
    assert len(m.clear_epoch().trades) == 0


def test_cancel_rules() -> None:
    m = market()
    m.place(o("s", SELL, 1000, 3, owner="u"))
    with pytest.raises(OrderRejected) as err:
        m.cancel("s", "someone-else")
    assert err.value.code == "not_owner"
    with pytest.raises(OrderRejected) as err:
        m.cancel("nope", "u")
    assert err.value.code == "order_not_found"
    assert m.cancel("s", "u").status is OrderStatus.CANCELLED
    with pytest.raises(OrderRejected) as err:
        m.cancel("s", "u")
    assert err.value.code == "order_not_open"
    assert m.place(o("b", BUY, 1000, 5)) == []  # the cancelled sell no longer trades


def test_cda_price_time_priority_and_resting_price() -> None:
    m = market()
    m.place(o("s1", SELL, 1000, 4.0))
    m.place(o("s2", SELL, 1000, 3.9))
    m.place(o("s3", SELL, 1000, 3.9))
    trades = m.place(o("b", BUY, 2500, 4.2))
    assert [(t.sell_id, t.quantity_wh, t.price) for t in trades] == [
        ("s2", 1000, 3_900_000),
        ("s3", 1000, 3_900_000),
        ("s1", 500, 4_000_000),
    ]
    # an incoming sell trades at the resting buy's price
    m.place(o("b2", BUY, 1000, 4.1))
    (t,) = m.place(o("s4", SELL, 1000, 3.8))
    assert (t.buy_id, t.price) == ("b2", 4_100_000)


def test_cda_wheeling_between_zones() -> None:
    wheel = Wheeling.from_rows([("a", "b", 500_000), ("b", "a", 500_000), ("c", "c", 0)])
    m = market(wheeling=wheel)
    m.place(o("sa", SELL, 1000, 4.0, zone="a"))
    m.place(o("sc", SELL, 1000, 2.0, zone="c"))  # cheapest, but c cannot reach b
    assert m.place(o("b1", BUY, 1000, 4.4, zone="b")) == []  # 4.0 + 0.5 > 4.4
    (t,) = m.place(o("b2", BUY, 1000, 4.5, zone="b"))
    assert (t.sell_id, t.price, t.wheeling_rate) == ("sa", 4_000_000, 500_000)
    assert t.receipt.buyer_paid == 4_500_000


def test_ioc_and_fok_in_cda() -> None:
    m = market()
    m.place(o("s1", SELL, 1000, 4.0))
    fok = o("f", BUY, 2000, 5, tif=TimeInForce.FOK)
    assert m.place(fok) == [] and fok.status is OrderStatus.CANCELLED
    ioc = o("i", BUY, 2000, 5, tif=TimeInForce.IOC)
    (t,) = m.place(ioc)
    assert t.quantity_wh == 1000 and ioc.status is OrderStatus.CANCELLED
    assert ioc.filled_wh == 1000
    assert m.depth() == {"*": {"bids": [], "asks": []}}


def test_fok_in_call_auction_is_withdrawn_if_partial() -> None:
    m = market(Mechanism.UNIFORM)
    m.place(o("s1", SELL, 1000, 3))
    m.place(o("f", BUY, 2000, 5, tif=TimeInForce.FOK))
    m.place(o("b", BUY, 500, 4))
    outcome = m.clear_epoch()
    assert [(t.buy_id, t.quantity_wh) for t in outcome.trades] == [("b", 500)]
    assert outcome.closed_orders["f"] is OrderStatus.CANCELLED
    assert outcome.closed_orders["s1"] is OrderStatus.EXPIRED


def test_call_auction_statuses_and_next_epoch() -> None:
    m = market(Mechanism.UNIFORM)
    m.place(o("s1", SELL, 1000, 3))
    m.place(o("b1", BUY, 400, 5))
    m.place(o("i", BUY, 800, 4, tif=TimeInForce.IOC))
    outcome = m.clear_epoch()
    assert outcome.closed_orders == {
        "s1": OrderStatus.FILLED,
        "b1": OrderStatus.FILLED,
        "i": OrderStatus.CANCELLED,  # IOC: its unfilled 200 Wh is cancelled, not expired
    }
    assert outcome.volume_wh == 1000
    assert m.epoch == 1
    m.place(o("s1", SELL, 1000, 3))  # ids are per epoch


def test_cda_breaker_halts_before_the_jump_trades_and_admin_resumes() -> None:
    m = market()
    m.place(o("s1", SELL, 1000, 4.0), now_ms=0)
    m.place(o("b1", BUY, 1000, 4.0), now_ms=1_000)
    m.place(o("s2", SELL, 1000, 4.5), now_ms=2_000)
    trades = m.place(o("b2", BUY, 1000, 4.5), now_ms=3_000)  # +12.5% within 60 s
    assert trades == [] and m.halted
    assert rejected(m, o("b3", BUY, 1000, 4.5)) == "market_halted"
    m.resume()
    (t,) = m.place(o("b3", BUY, 1000, 4.5), now_ms=4_000)
    assert t.price == 4_500_000


def test_cda_breaker_window_expires() -> None:
    m = market()
    m.place(o("s1", SELL, 1000, 4.0), now_ms=0)
    m.place(o("b1", BUY, 1000, 4.0), now_ms=0)
    m.place(o("s2", SELL, 1000, 4.5), now_ms=61_000)
    assert len(m.place(o("b2", BUY, 1000, 4.5), now_ms=61_001)) == 1
    assert m.halted is None


def test_epoch_breaker_against_reference_vwap() -> None:
    m = market(Mechanism.UNIFORM)
    for _ in range(2):
        m.place(o("s", SELL, 1000, 4.0))
        m.place(o("b", BUY, 1000, 4.0))
        assert m.clear_epoch().clearing_price == 4_000_000
    m.place(o("s", SELL, 1000, 5.0))
    m.place(o("b", BUY, 1000, 5.0))
    outcome = m.clear_epoch()
    assert outcome.halted and outcome.trades == [] and m.halted
    with pytest.raises(OrderRejected):
        m.clear_epoch()
    m.resume()
    outcome = m.clear_epoch()  # the same orders, now accepted
    assert outcome.clearing_price == 5_000_000 and outcome.volume_wh == 1000


orders_strategy = st.lists(
    st.tuples(
        st.sampled_from([BUY, SELL]),
        st.integers(1, 3000),
        st.integers(200, 800),
        st.sampled_from(["a", "b"]),
        st.sampled_from(list(TimeInForce)),
    ),
    max_size=40,
)


def run(mechanism: Mechanism, spec: list[tuple[Side, int, int, str, TimeInForce]]) -> list[Trade]:
    wheel = Wheeling.from_rows([("a", "a", 0), ("b", "b", 0), ("a", "b", 300_000)])
    m = market(mechanism, wheeling=wheel, breaker_bps=10**12, max_open_orders_per_user=10**6)
    trades: list[Trade] = []
    for k, (side, wh, price, zone, tif) in enumerate(spec):
        try:
            trades += m.place(Order(f"o{k}", f"u{k % 7}", side, wh, price * 10_000, zone, tif))
        except OrderRejected as exc:
            assert exc.code == "self_trade"
    outcome = m.clear_epoch()
    if mechanism is Mechanism.CDA:
        assert outcome.trades == trades  # the epoch reports what executed on arrival
    else:
        assert trades == []  # call auctions trade only at clearing
    return outcome.trades


@settings(max_examples=120, deadline=None)
@given(st.sampled_from(list(Mechanism)), orders_strategy)
def test_conservation_limits_and_determinism(
    mechanism: Mechanism, spec: list[tuple[Side, int, int, str, TimeInForce]]
) -> None:
    trades = run(mechanism, spec)
    limits = {f"o{k}": s for k, s in enumerate(spec)}
    bought: dict[str, int] = {}
    sold: dict[str, int] = {}
    for t in trades:
        r = t.receipt
        assert r.buyer_paid == r.net_to_seller + r.fee + r.wheeling
        assert t.buyer != t.seller
        buy, sell = limits[t.buy_id], limits[t.sell_id]
        assert t.price >= sell[2] * 10_000
        assert t.price + t.wheeling_rate <= buy[2] * 10_000
        assert t.wheeling_rate == (0 if t.buyer_zone == t.seller_zone else 300_000)
        assert (t.seller_zone, t.buyer_zone) != ("b", "a")
        bought[t.buy_id] = bought.get(t.buy_id, 0) + t.quantity_wh
        sold[t.sell_id] = sold.get(t.sell_id, 0) + t.quantity_wh
    assert sum(bought.values()) == sum(sold.values())
    for oid, wh in (bought | sold).items():
        assert wh <= limits[oid][1]
    for oid, wh in bought.items():
        if limits[oid][4] is TimeInForce.FOK:
            assert wh == limits[oid][1]
    assert run(mechanism, spec) == trades
