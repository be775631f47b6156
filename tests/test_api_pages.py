"""The pages, driven through the app without a browser: sign up, trade, cancel, the explorer
and the operator's page (tests/test_e2e.py drives them in Chromium too)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gridtokenx.accounts import Accounts
from gridtokenx.api.app import create_app
from gridtokenx.market.config import NO_BREAKER, MarketConfig
from gridtokenx.services.site import Platform
from gridtokenx.services.trading import Trading

ADMIN = "admin-" + "p" * 30


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    monkeypatch.delenv("SOLANA_RPC_URL", raising=False)
    platform = Platform(tmp_path / "platform")
    trading = Trading(
        platform, MarketConfig(breaker_bps=NO_BREAKER), 900.0, lambda: 1_790_000_010.0
    )
    app = create_app(
        platform,
        ADMIN,
        trading,
        Accounts(platform.books, b"p" * 32),
        demo_grant=10_000_000,
        auto_approve=True,
    )
    yield TestClient(app)
    platform.books.dispose()


def test_a_household_signs_up_trades_and_cancels_through_the_pages(client: TestClient) -> None:
    form = {"email": "pat@example.org", "password": "correct horse 1", "role": "consumer"}
    r = client.post("/signup", data=form)
    assert r.status_code == 200 and r.url.path == "/me"
    assert "pat@example.org" in r.text and "10" in r.text  # the demo grant, in THB
    r = client.post("/orders", data={"side": "buy", "quantity_wh": "1000", "price_thb": "4.5"})
    assert r.url.path == "/me" and "placed" in r.text
    order_id = re.search(r"Order (o-[0-9a-f]{20}) placed", r.text)
    assert order_id is not None
    r = client.post(f"/orders/{order_id.group(1)}/cancel")
    assert "cancelled; its escrow is back" in r.text
    # a buy worth under 1 µTHB is a refusal on the page, not a 500
    admin = {"Authorization": f"Bearer {ADMIN}"}
    r = client.put("/api/v1/admin/market/parameters", headers=admin, json={"min_price": 1})
    assert r.status_code == 200
    r = client.post("/orders", data={"side": "buy", "quantity_wh": "1", "price_thb": "0.000001"})
    assert r.status_code == 200 and r.url.path == "/"
    assert r.url.params["error"] == "order_too_small: the order's value rounds to 0 uTHB"
    assert client.get("/").status_code == 200 and 'id="chart"' in client.get("/").text
    assert client.get("/explorer").status_code == 200
    r = client.get("/admin")
    assert r.url.path == "/login" and r.url.params["error"] == "Operators only."
    client.post("/logout")
    assert client.get("/me").url.path == "/login"


def test_pages_are_not_in_the_openapi_document(client: TestClient) -> None:
    paths = set(client.get("/openapi.json").json()["paths"])
    assert not paths & {"/", "/login", "/signup", "/me", "/orders", "/admin", "/explorer"}
    assert "/api/v1/orders" in paths and "/api/v1/auth/login" in paths


def test_the_account_page_of_a_platform_without_a_market(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An API without a market (create_app with no Trading): the page shows the wallet and
    no orders, never a 500."""
    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    monkeypatch.delenv("SOLANA_RPC_URL", raising=False)
    platform = Platform(tmp_path / "platform")
    accounts = Accounts(platform.books, b"p" * 32)
    client = TestClient(create_app(platform, ADMIN, None, accounts, auto_approve=True))
    form = {"email": "kim@example.org", "password": "correct horse 1", "role": "consumer"}
    r = client.post("/signup", data=form)
    assert (r.status_code, r.url.path) == (200, "/me")
    assert "kim@example.org" in r.text
    orders = r.text.split('<table id="orders">')[1].split("</table>")[0]
    assert orders.count("<tr>") == 1  # the heading only
    assert (
        client.post(
            "/orders", data={"side": "buy", "quantity_wh": "1", "price_thb": "4"}
        ).url.params["error"]
        == "no market here"
    )
    platform.books.dispose()
