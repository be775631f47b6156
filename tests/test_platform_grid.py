"""The grid step of the epoch pipeline: trades between households of the feeder are checked
by the power flow and cut back while a limit is broken; the state, topology, curtailments
and the map are served."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from platform_site import ADMIN, EPOCH_S, Clock, Site, fund, signup

from gridtokenx.accounts import Accounts
from gridtokenx.adapters.gridview import GridView
from gridtokenx.api.app import create_app
from gridtokenx.market.config import NO_BREAKER, MarketConfig
from gridtokenx.market.trades import Trade
from gridtokenx.services.site import Platform
from gridtokenx.services.trading import Trading
from gridtokenx.sim.grid import DEFAULT_GRID, load_simbench


@pytest.fixture(scope="module")
def view() -> GridView:
    return GridView(load_simbench(DEFAULT_GRID))


def test_a_trade_the_feeder_cannot_carry_is_cut_back(view: GridView) -> None:
    far = view.grid.households[-1].meter_id
    near = view.grid.households[0].meter_id
    step = 96 * 160 + 44  # a June noon
    ok = Trade("b", "s", "buyer", "seller", "z", "z", 1_000, 3_000_000, 0, 100)
    huge = Trade("b2", "s2", "buyer2", "seller2", "z", "z", 400_000, 3_000_000, 0, 100)
    meters = {"buyer": near, "seller": far, "buyer2": near, "seller2": far}
    remaining = view.curtail(7, step, [ok, huge], meters)
    assert remaining[0] == 1_000  # a kWh moves freely
    assert remaining[1] < 400_000  # 1.6 MW for a quarter hour does not
    assert view.state["violations_before"] and not view.state["violations_after"]
    assert view.curtailments[-1]["reason"]
    assert "<svg" in view.svg() and "<circle" in view.svg()


def test_the_pipeline_checks_and_serves_the_grid(
    view: GridView, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    platform = Platform(tmp_path)
    clock = Clock()
    trading = Trading(platform, MarketConfig(breaker_bps=NO_BREAKER), EPOCH_S, clock, grid=view)
    accounts = Accounts(platform.books, b"k" * 32)
    client = TestClient(create_app(platform, ADMIN, trading, accounts, auto_approve=True))

    class S:  # what fund() needs
        pass

    site = S()
    site.platform, site.client = platform, client  # type: ignore[attr-defined]
    seller, buyer = signup(client, "s@x.org"), signup(client, "b@x.org", "consumer")
    from solders.pubkey import Pubkey

    platform.register_meter(
        view.grid.households[0].meter_id, b"\1" * 32, Pubkey.from_string(seller["wallet"])
    )
    platform.register_meter(
        view.grid.households[5].meter_id, b"\2" * 32, Pubkey.from_string(buyer["wallet"])
    )
    fund(site, seller, grx=2_000)  # type: ignore[arg-type]
    fund(site, buyer, thb=10_000_000)  # type: ignore[arg-type]
    client.post(
        "/api/v1/orders",
        headers=seller["auth"],
        json={"side": "sell", "quantity_wh": 1_000, "price": 3_000_000},
    )
    client.post(
        "/api/v1/orders",
        headers=buyer["auth"],
        json={"side": "buy", "quantity_wh": 1_000, "price": 4_000_000},
    )
    clock.now += EPOCH_S
    assert trading.tick()
    state = client.get("/api/v1/grid/state").json()
    assert state["checked_trades"] == 1 and state["violations_after"] is False
    assert len(client.get("/api/v1/grid/topology").json()["buses"]) > 10
    assert client.get("/api/v1/grid/curtailments").status_code == 200
    bare = TestClient(
        create_app(
            platform,
            ADMIN,
            Trading(platform, MarketConfig(), EPOCH_S, clock),
            accounts,
            auto_approve=True,
        )
    )
    assert bare.get("/api/v1/grid/state").json()["code"] == "no_grid"


def test_the_meters_of_an_epochs_traders_are_read_for_them_alone(sqlite_site: Site) -> None:
    """The grid check maps each trader to its meter (the first by id) with lookups for the
    epoch's traders only, not the site's whole registry."""
    from solders.pubkey import Pubkey

    s = sqlite_site
    a, b, c = (signup(s.client, f"{n}@x.org") for n in "abc")
    for meter_id, user, key in (("m-b", a, 1), ("m-a", a, 2), ("m-c", c, 3)):
        s.platform.register_meter(meter_id, bytes([key]) * 32, Pubkey.from_string(user["wallet"]))
    assert s.trading.meters_of_users({a["user_id"], b["user_id"]}) == {a["user_id"]: "m-a"}
    assert s.trading.meters_of_users({c["user_id"], "nobody"}) == {c["user_id"]: "m-c"}
    assert s.trading.meters_of_users(set()) == {}
