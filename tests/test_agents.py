"""The demo's households trade like households: a PV home sells only its forecast surplus
and a home buys only its deficit, a battery charges from cheap surplus and sells at the
evening peak, prices follow the tariffs (platform/gridtokenx/agents.py); and the agents'
orders cross and settle on a real platform (books on SQLite, the embedded ledger)."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from platform_site import ADMIN_H, EPOCH_S, Clock, Site, fund, signup

from gridtokenx.agents import Agents, Household, Order, Tariffs, decide, forecast
from gridtokenx.market.config import MarketConfig

T = Tariffs()  # retail 4.18, feed-in 2.20 THB/kWh: R - F = 1.98
ASK_PV, BID_HOME, BID_CHARGE, ASK_PEAK = 3_071_200, 3_308_800, 3_130_600, 3_249_400
MAX = 1_000_000


def home(**kw: int) -> Household:
    values = {"grx_wh": 0, "thb": 0, "surplus_wh": 0, "deficit_wh": 0} | kw
    return Household(**values)


def test_prices_follow_the_tariffs() -> None:
    assert [T.between(p) for p in (44, 56, 47, 53)] == [ASK_PV, BID_HOME, BID_CHARGE, ASK_PEAK]
    # every price beats the utility for both sides; the battery buys below the homes and
    # sells below their bids, and gains after a 97 % round trip
    assert T.feed_in < ASK_PV < BID_CHARGE < ASK_PEAK < BID_HOME < T.retail
    assert ASK_PEAK * 97 // 100 > BID_CHARGE
    # any clearing price among these orders is within the circuit breaker's 10 % of another
    assert ASK_PV * (10_000 + MarketConfig().breaker_bps) > BID_HOME * 10_000


def test_the_forecast_is_the_recent_net_flow() -> None:
    assert forecast(0, 2_000, 900) == (500, 0)
    assert forecast(700, 100, 20) == (0, 3)  # 600 W for 20 s: 3.33 Wh, rounded down
    assert forecast(300, 300, 900) == (0, 0)


def test_a_pv_home_sells_only_its_forecast_surplus() -> None:
    assert decide(home(grx_wh=1_000, surplus_wh=400), 12, T, MAX) == [Order("sell", 400, ASK_PV)]
    # only what it holds (minted from its export), never more
    assert decide(home(grx_wh=150, surplus_wh=400), 12, T, MAX) == [Order("sell", 150, ASK_PV)]
    assert decide(home(grx_wh=0, surplus_wh=400), 12, T, MAX) == []
    # nothing to sell without a forecast surplus, GRX held or not; and it never buys then
    assert decide(home(grx_wh=1_000, thb=10**9), 12, T, MAX) == []
    assert decide(home(grx_wh=1_000, surplus_wh=400, thb=10**9), 12, T, MAX) == [
        Order("sell", 400, ASK_PV)
    ]
    assert decide(home(grx_wh=5_000, surplus_wh=4_000), 12, T, 1_000) == [
        Order("sell", 1_000, ASK_PV)
    ]


def test_a_home_buys_only_its_deficit_if_it_can_pay() -> None:
    assert decide(home(thb=827_200, deficit_wh=250), 12, T, MAX) == [Order("buy", 250, BID_HOME)]
    assert decide(home(thb=827_199, deficit_wh=250), 12, T, MAX) == []
    assert decide(home(thb=10**9), 12, T, MAX) == []  # no deficit: no order
    # GRX a home bought is energy it used: it does not resell it
    assert decide(home(grx_wh=900, thb=10**9, deficit_wh=100), 12, T, MAX) == [
        Order("buy", 100, BID_HOME)
    ]


def test_a_battery_charges_from_cheap_surplus_and_sells_at_the_evening_peak() -> None:
    battery = {"battery_wh": 5_000, "charge_wh": 500}
    # midday with room: its own surplus charges it (nothing sold), and it bids for cheap
    # surplus, below the homes' bids, besides buying its deficit at theirs
    assert decide(home(grx_wh=1_000, surplus_wh=400, **battery), 12, T, MAX) == []
    assert decide(home(grx_wh=4_800, surplus_wh=400, **battery), 12, T, MAX) == [
        Order("sell", 200, ASK_PV)
    ]
    assert decide(home(grx_wh=1_000, thb=10**9, deficit_wh=100, **battery), 12, T, MAX) == [
        Order("buy", 100, BID_HOME),
        Order("buy", 500, BID_CHARGE),
    ]
    assert decide(home(grx_wh=4_900, thb=10**9, **battery), 12, T, MAX) == [
        Order("buy", 100, BID_CHARGE)
    ]
    # full: it does not charge
    assert decide(home(grx_wh=5_000, thb=10**9, **battery), 12, T, MAX) == []
    # the evening peak: it sells its charge (at most its rate), buys nothing
    assert decide(home(grx_wh=1_200, thb=10**9, deficit_wh=300, **battery), 18, T, MAX) == [
        Order("sell", 500, ASK_PEAK)
    ]
    assert decide(home(grx_wh=0, thb=10**9, deficit_wh=300, **battery), 18, T, MAX) == []
    # at night it neither charges nor sells: a home with a deficit
    assert decide(home(grx_wh=1_200, thb=10**9, deficit_wh=300, **battery), 23, T, MAX) == [
        Order("buy", 300, BID_HOME)
    ]


def local_noon() -> float:
    """A Unix time at 12:00 in Bangkok (the agents' site), on a 900 s epoch boundary."""
    return datetime(2026, 9, 22, 12, 0, tzinfo=ZoneInfo("Asia/Bangkok")).timestamp()


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Site:
    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    monkeypatch.delenv("SOLANA_RPC_URL", raising=False)
    clock = Clock()
    clock.now = local_noon() + 10
    return Site(tmp_path / "platform", None, clock)


def test_the_agents_orders_cross_and_settle(site: Site) -> None:
    pv = signup(site.client, "a-pv@x.org", "prosumer")
    battery = signup(site.client, "b-battery@x.org", "consumer")
    flat = signup(site.client, "c-flat@x.org", "consumer")
    fund(site, pv, grx=2_000)
    fund(site, battery, thb=100_000_000)
    fund(site, flat, thb=100_000_000)
    flows = {  # average W: the PV home exports 2 kW, the flat draws 800 W, the battery 0
        pv["wallet"]: (0, 2_000),
        flat["wallet"]: (800, 0),
    }
    agents = Agents(site.trading, flows=lambda: flows, battery_homes=1, battery_w=1_000)
    assert agents.act() == 3
    assert agents.act() == 0  # once per epoch
    placed = {
        who: [
            (o["side"], o["quantity_wh"], o["price"])
            for o in site.client.get("/api/v1/orders", headers=user["auth"]).json()
        ]
        for who, user in (("pv", pv), ("battery", battery), ("flat", flat))
    }
    # over a 900 s epoch: 500 Wh surplus, 200 Wh deficit, 250 Wh of charge (1 kW)
    assert placed == {
        "pv": [("sell", 500, ASK_PV)],
        "battery": [("buy", 250, BID_CHARGE)],
        "flat": [("buy", 200, BID_HOME)],
    }
    epoch = site.trading.market.epoch
    site.trading.clock.now += EPOCH_S  # type: ignore[attr-defined]
    assert site.trading.tick() == [epoch]
    done = site.client.get(f"/api/v1/market/epochs/{epoch}", headers=ADMIN_H).json()
    # uniform price: the flat's deficit first, the battery charges from what is left
    assert done["volume_wh"] == 450 and done["state"] == "settled"
    site.close()
