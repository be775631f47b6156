"""`POST /api/v1/orders` answered by its fast path (`api.routers.orders.FastPath`) is the
same as the route's answer: every request below goes to two apps over one platform, one with
the fast path and one without, and both answer alike (status, body, Retry-After); the fast
path counts what it took itself, and leaves the rest to the route."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from platform_site import ADMIN, Clock, Site, fund, signup
from solders.keypair import Keypair
from sqlalchemy import func, select

from gridtokenx.adapters.ratelimit import MemoryLimiter
from gridtokenx.adapters.tables import market_orders
from gridtokenx.api.app import create_app

ORDER = {"side": "buy", "quantity_wh": 500, "price": 2_000_000}


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    monkeypatch.delenv("SOLANA_RPC_URL", raising=False)
    s = Site(tmp_path, None, Clock())
    yield s
    s.close()


def apps(site: Site, limits: tuple[int, int] = (100_000, 100_000)) -> tuple[TestClient, ...]:
    """(fast, routed) clients over the same platform and market, each with its own limiter
    on a stopped clock: a minute's window never ends between two requests of a test (CI
    crossed one: a third request in "the same minute" was allowed)."""
    return tuple(
        TestClient(
            create_app(
                site.platform,
                ADMIN,
                site.trading,
                site.accounts,
                limits_per_minute=limits,
                limiter=MemoryLimiter(clock=lambda: 30.0),
                fast_orders=fast,
            ),
            raise_server_exceptions=False,  # a bug's 500 is an answer here
        )
        for fast in (True, False)
    )


def taken(client: TestClient) -> float:
    value = client.app.state.metrics.get_sample_value("gtx_api_fast_orders_total")  # type: ignore[attr-defined]
    return float(value or 0)


def orders(site: Site) -> int:
    with site.platform.books.connect() as c:
        return int(c.execute(select(func.count()).select_from(market_orders)).scalar_one())


def alike(fast: TestClient, routed: TestClient, **request: Any) -> tuple[int, dict[str, Any]]:
    """Both apps' answers to the same request: equal, but for a new order's id and time."""
    a, b = (c.post("/api/v1/orders", **request) for c in (fast, routed))
    assert a.status_code == b.status_code
    assert a.headers.get("retry-after") == b.headers.get("retry-after")
    body_a, body_b = a.json(), b.json()
    if a.status_code == 201:
        assert body_a["order_id"] != body_b["order_id"]
        for body in (body_a, body_b):
            body.pop("order_id")
            body.pop("created_at")
            body.pop("seq")
    assert body_a == body_b
    return a.status_code, body_a


def test_the_fast_path_places_what_the_route_places(site: Site) -> None:
    fast, routed = apps(site)
    user = signup(site.client, "fast@example.org")
    fund(site, user, thb=10**9)
    auth = user["auth"]
    status, body = alike(fast, routed, json=ORDER, headers=auth)
    assert (status, body["side"], body["quantity_wh"], body["price"]) == (
        201,
        "buy",
        500,
        2_000_000,
    )
    assert (body["zone"], body["tif"], body["status"], body["filled_wh"]) == (
        "default",
        "gfe",
        "open",
        0,
    )
    assert taken(fast) == 1 and taken(routed) == 0
    # an Idempotency-Key is the route's (its claim reads the database): one order each
    keyed = [
        c.post("/api/v1/orders", json=ORDER, headers={**auth, "Idempotency-Key": f"k-{n}"})
        for n, c in enumerate((fast, routed))
    ]
    assert [r.status_code for r in keyed] == [201, 201]
    again = fast.post("/api/v1/orders", json=ORDER, headers={**auth, "Idempotency-Key": "k-0"})
    assert again.json()["order_id"] == keyed[0].json()["order_id"]
    assert taken(fast) == 1
    assert orders(site) == 4
    # refused by the placement itself (not enough THB): the same code from both
    poor = signup(site.client, "poor@example.org")
    fund(site, poor, thb=1_000)
    status, body = alike(fast, routed, json=ORDER, headers=poor["auth"])
    assert (status, body["code"]) == (422, "insufficient_funds")
    assert taken(fast) == 2 and orders(site) == 4


def test_what_the_fast_path_would_refuse_the_route_answers_alike(site: Site) -> None:
    fast, routed = apps(site)
    user = signup(site.client, "refused@example.org")
    fund(site, user, thb=10**9)
    auth = user["auth"]
    bad_bodies: list[tuple[dict[str, Any], str]] = [
        ({"json": {**ORDER, "side": "hold"}}, "invalid_request"),
        ({"json": {**ORDER, "quantity_wh": "500"}}, "invalid_request"),  # strict: no strings
        ({"json": {**ORDER, "quantity_wh": 500.0}}, "invalid_request"),
        ({"json": {**ORDER, "quantity_wh": 0}}, "invalid_request"),
        ({"json": {"side": "buy", "quantity_wh": 5}}, "invalid_request"),
        ({"json": {**ORDER, "zone": "z" * 65}}, "invalid_request"),
        ({"json": [ORDER]}, "invalid_request"),
        ({"content": b"{", "headers": {"Content-Type": "application/json"}}, "malformed_body"),
    ]
    for request, code in bad_bodies:
        headers = {**auth, **request.pop("headers", {})}
        status, body = alike(fast, routed, headers=headers, **request)
        assert (status, body["code"]) == (422, code), request
    for headers, code in [
        ({}, "no_token"),
        ({"Authorization": "Bearer not-a-token"}, "bad_token"),
        ({"Authorization": auth["Authorization"].replace("Bearer", "Basic")}, "no_token"),
    ]:
        status, body = alike(fast, routed, json=ORDER, headers=headers)
        assert (status, body["code"]) == (401, code)
    # a valid body sent as another content type: the route's refusal, from both
    status, body = alike(
        fast,
        routed,
        content=b'{"side":"buy","quantity_wh":5,"price":9}',
        headers={**auth, "Content-Type": "text/plain"},
    )
    assert (status, body["code"]) == (422, "invalid_request")
    # two Content-Types: the route reads the first, and both answer as it does
    bearer = ("Authorization", auth["Authorization"])
    for types, code in [
        (("application/json", "text/plain"), "price_out_of_bounds"),  # parsed: price 9
        (("text/plain", "application/json"), "invalid_request"),  # not parsed as JSON
    ]:
        status, body = alike(
            fast,
            routed,
            content=b'{"side":"buy","quantity_wh":5,"price":9}',
            headers=[bearer, *(("Content-Type", t) for t in types)],
        )
        assert (status, body["code"], taken(fast)) == (422, code, 0)
    # a role that does not trade
    site.accounts.register(
        "grid@example.org", "correct horse 1", "grid_operator", Keypair().pubkey()
    )
    grid = site.accounts.login("grid@example.org", "correct horse 1")
    status, body = alike(
        fast, routed, json=ORDER, headers={"Authorization": f"Bearer {grid.access_token}"}
    )
    assert (status, body["code"]) == (403, "wrong_role")
    assert taken(fast) == 0 and orders(site) == 0


def test_an_unapproved_account_a_limit_and_a_bug_answer_alike(
    tmp_path: Path, site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, routed = apps(site, limits=(2, 100_000))
    user = signup(site.client, "limited@example.org")
    fund(site, user, thb=10**9)
    auth = user["auth"]
    for _ in range(2):
        assert alike(fast, routed, json=ORDER, headers=auth)[0] == 201
    status, body = alike(fast, routed, json=ORDER, headers=auth)  # the third in a minute
    assert (status, body["code"]) == (429, "rate_limited")
    assert taken(fast) == 3 and orders(site) == 4
    pending = Site(tmp_path / "pending", None, Clock(), auto_approve=False)
    try:
        p_fast, p_routed = apps(pending)
        waiting = signup(pending.client, "waiting@example.org")
        status, body = alike(p_fast, p_routed, json=ORDER, headers=waiting["auth"])
        assert (status, body["code"]) == (403, "not_approved")

        async def broken(*_args: Any, **_kwargs: Any) -> dict[str, Any]:
            raise RuntimeError("a bug")

        monkeypatch.setattr(pending.trading, "place_async", broken)
        status, body = alike(p_fast, p_routed, json=ORDER, headers=waiting["auth"])
        assert (status, body) == (500, {"code": "internal_error", "message": "internal error"})
    finally:
        pending.close()
