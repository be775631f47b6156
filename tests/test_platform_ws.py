"""The WebSocket: authenticated subscriptions, own-account events only to their owner, slow
clients dropped, and fan-out across two platform instances through Redis."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from platform_site import ADMIN, Clock, Site, fund, signup
from services import unavailable
from starlette.websockets import WebSocketDisconnect

from gridtokenx.adapters.events import Event
from gridtokenx.api.app import create_app


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Site:
    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    return Site(tmp_path, None, Clock())


def test_subscriptions_deliver_market_and_own_account_events(site: Site) -> None:
    c = site.client
    alice, bob = signup(c, "a@x.org", "consumer"), signup(c, "b@x.org", "consumer")
    fund(site, alice, thb=10_000_000)
    with (
        c.websocket_connect(f"/ws?token={alice['access_token']}") as wa,
        c.websocket_connect(f"/ws?token={bob['access_token']}") as wb,
    ):
        wa.send_json({"subscribe": ["market", "account"]})
        wb.send_json({"subscribe": ["account"]})
        assert wa.receive_json() == {"type": "subscribed", "data": ["account", "market"]}
        assert wb.receive_json()["type"] == "subscribed"
        r = c.post(
            "/api/v1/orders",
            headers=alice["auth"],
            json={"side": "buy", "quantity_wh": 100, "price": 3_000_000},
        )
        assert r.status_code == 201
        got = [wa.receive_json() for _ in range(2)]
        assert {g["type"] for g in got} == {"order", "book"}
        assert (
            next(g for g in got if g["type"] == "order")["data"]["order_id"] == r.json()["order_id"]
        )
        # bob hears nothing of alice's order: a market event he did not subscribe to would
        # come first, so send him one of his own and check it is the next he receives
        site.trading.publish(Event("order", {"order_id": "bob's"}, bob["user_id"]))
        assert wb.receive_json()["data"] == {"order_id": "bob's"}


def test_without_a_valid_token_the_socket_is_closed(site: Site) -> None:
    with (
        pytest.raises(WebSocketDisconnect) as err,
        site.client.websocket_connect("/ws?token=nonsense") as ws,
    ):
        ws.receive_json()
    assert err.value.code == 4401


def test_a_slow_client_is_dropped_not_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    site = Site(tmp_path, None, Clock())
    app = create_app(
        site.platform, ADMIN, site.trading, site.accounts, ws_queue=4, auto_approve=True
    )
    c = TestClient(app)
    alice = signup(c, "a@x.org")
    with c.websocket_connect(f"/ws?token={alice['access_token']}") as ws:
        ws.send_json({"subscribe": ["market"]})
        assert ws.receive_json()["type"] == "subscribed"
        start = time.perf_counter()
        for k in range(200):  # the market goes on at full speed
            site.trading.publish(Event("book", {"k": k}))
        assert time.perf_counter() - start < 1.0
        with pytest.raises(WebSocketDisconnect) as err:
            for _ in range(300):
                ws.receive_json()
        assert err.value.code == 4408


def test_events_fan_out_across_instances_through_redis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis

    try:
        redis.Redis.from_url("redis://127.0.0.1:6379/0").ping()
    except redis.RedisError as exc:
        unavailable(f"Redis at 127.0.0.1:6379 is not usable: {exc.__class__.__name__}")
    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    site = Site(tmp_path, None, Clock())
    one = TestClient(
        create_app(
            site.platform,
            ADMIN,
            site.trading,
            site.accounts,
            redis_url="redis://127.0.0.1:6379/0",
            auto_approve=True,
        )
    )
    other_trading_listeners = list(site.trading.listeners)
    two_app = create_app(
        site.platform,
        ADMIN,
        None,
        site.accounts,
        redis_url="redis://127.0.0.1:6379/0",
        auto_approve=True,
    )
    two = TestClient(two_app)
    alice = signup(one, "a@x.org")
    with one, two, two.websocket_connect(f"/ws?token={alice['access_token']}") as ws:
        ws.send_json({"subscribe": ["market"]})
        assert ws.receive_json()["type"] == "subscribed"
        time.sleep(0.3)  # the relay's subscription is live
        site.trading.publish(Event("clearing", {"epoch": 7}))  # happens on instance one
        assert ws.receive_json() == {"type": "clearing", "data": {"epoch": 7}}
    del other_trading_listeners
