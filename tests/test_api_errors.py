"""The API's one error shape: every refusal is JSON {code, message} with the status of its
kind; bodies over the limit are 413 before they are parsed; a boolean is not a quantity; no
input, however odd, gets a 5xx."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gridtokenx.accounts import Accounts, AccountSuspended, AuthUnauthorized
from gridtokenx.api.app import create_app
from gridtokenx.api.errors import status_of
from gridtokenx.errors import (
    CodedError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    RateLimited,
    TooLarge,
    Unauthorized,
    Unavailable,
)
from gridtokenx.market.config import NO_BREAKER, MarketConfig
from gridtokenx.market.errors import OrderRejected, WheelingError
from gridtokenx.services.site import Platform
from gridtokenx.services.trading import Trading

ADMIN = "admin-" + "e" * 30
ADMIN_H = {"Authorization": f"Bearer {ADMIN}"}


class Site:
    def __init__(self, data: Path, **options: Any) -> None:
        self.platform = Platform(data)
        self.trading = Trading(
            self.platform, MarketConfig(breaker_bps=NO_BREAKER), 900.0, lambda: 1_790_000_010.0
        )
        self.accounts = Accounts(self.platform.books, b"e" * 32)
        self.app = create_app(
            self.platform, ADMIN, self.trading, self.accounts, **options, auto_approve=True
        )
        self.client = TestClient(self.app)

    def household(self, email: str, thb: int = 0) -> dict[str, Any]:
        body = {"email": email, "password": "correct horse 1", "role": "prosumer"}
        made = self.client.post("/api/v1/auth/register", json=body)
        assert made.status_code == 201, made.text
        tokens = self.client.post("/api/v1/auth/login", json=body).json()
        if thb:
            topup = {
                "user_id": made.json()["user_id"],
                "micro_thb": thb,
                "reference": email.split("@")[0],
            }
            assert self.client.post("/api/v1/admin/topup", headers=ADMIN_H, json=topup).is_success
        return {**made.json(), "auth": {"Authorization": f"Bearer {tokens['access_token']}"}}

    def thb(self, user: dict[str, Any]) -> int:
        return int(self.client.get("/api/v1/wallet", headers=user["auth"]).json()["thb_micro"])


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    monkeypatch.delenv("SOLANA_RPC_URL", raising=False)
    s = Site(tmp_path / "platform")
    yield s
    s.platform.books.dispose()


def test_each_kind_has_one_status() -> None:
    assert [
        status_of(e)
        for e in (
            NotFound("unknown_meter", "m"),
            Conflict("hub_exists", "h"),
            Forbidden("hub_suspended", "h"),
            Unauthorized("bad_token", "t"),
            InvalidInput("bad_signature", "s"),
            AuthUnauthorized("bad_credentials", "x"),
            AccountSuspended("suspended", "x"),
            OrderRejected("market_halted", "x"),
            OrderRejected("order_rate_limited", "x"),
            OrderRejected("insufficient_funds", "x"),
            WheelingError("invalid_wheeling", "x"),
            TooLarge("too_large", "x"),
            RateLimited("rate_limited", "x", 3),
            Unavailable("no_market", "x"),
            CodedError("anything", "x"),
        )
    ] == [404, 409, 403, 401, 422, 401, 403, 409, 429, 422, 422, 413, 429, 503, 422]
    # the domain's errors carry no HTTP status any more
    assert not hasattr(NotFound("unknown_meter", "m"), "status")
    assert isinstance(OrderRejected("market_halted", "x"), OrderRejected)


def test_a_buy_worth_less_than_one_micro_thb_is_refused_not_a_500(site: Site) -> None:
    """Found on main: an admin sets min_price to 1, then a 1 Wh buy at 1 µTHB/kWh escrows 0
    and the ledger's refusal escaped as a 500."""
    c = site.client
    r = c.put("/api/v1/admin/market/parameters", headers=ADMIN_H, json={"min_price": 1})
    assert r.status_code == 200 and r.json()["min_price"] == 1
    alice = site.household("alice@example.org", thb=5_000_000)
    order = {"side": "buy", "quantity_wh": 1, "price": 1}
    r = c.post("/api/v1/orders", headers=alice["auth"], json=order)
    assert (r.status_code, r.json()) == (
        422,
        {"code": "order_too_small", "message": "the order's value rounds to 0 uTHB"},
    )
    assert c.get("/api/v1/orders", headers=alice["auth"]).json() == []
    assert site.thb(alice) == 5_000_000
    # 1,000 Wh at 1 µTHB/kWh is worth 1 µTHB: placed, 1 µTHB escrowed
    r = c.post("/api/v1/orders", headers=alice["auth"], json={**order, "quantity_wh": 1000})
    assert r.status_code == 201, r.text
    assert site.thb(alice) == 4_999_999


@pytest.mark.parametrize("quantity", [True, False, "1000", 1000.0, None, [1000]])
def test_a_quantity_is_an_integer_and_nothing_else(site: Site, quantity: object) -> None:
    alice = site.household("alice@example.org", thb=5_000_000)
    order = {"side": "buy", "quantity_wh": quantity, "price": 4_000_000}
    r = site.client.post("/api/v1/orders", headers=alice["auth"], json=order)
    assert r.status_code == 422 and r.json()["code"] == "invalid_request", r.text
    assert r.json()["message"].startswith("body.quantity_wh: ")
    assert site.client.get("/api/v1/orders", headers=alice["auth"]).json() == []
    assert site.thb(alice) == 5_000_000


def test_bodies_that_are_not_json_or_not_utf8_get_the_error_shape(site: Site) -> None:
    alice = site.household("alice@example.org")
    json_h = {**alice["auth"], "Content-Type": "application/json"}
    for body in (b'{"side": "\xff\xfe"}', b"\xc3\x28", b'{"side": ', b"[1, 2"):
        r = site.client.post("/api/v1/orders", headers=json_h, content=body)
        assert (r.status_code, r.json()["code"]) == (422, "malformed_body"), (body, r.text)
        assert set(r.json()) == {"code", "message"}


def test_a_body_over_the_limit_is_413_before_it_is_read(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    site = Site(tmp_path / "p", body_limit=4096, batch_limit=8192)
    alice = site.household("alice@example.org", thb=5_000_000)
    big = {"side": "buy", "quantity_wh": 1000, "price": 4_000_000, "zone": "z" * 5000}
    r = site.client.post("/api/v1/orders", headers=alice["auth"], json=big)
    assert (r.status_code, r.json()["code"]) == (413, "body_too_large")
    assert r.json()["message"] == "the request body is over 4096 bytes"

    def chunks() -> Iterator[bytes]:  # no Content-Length: read only up to the limit
        yield b'{"side": "buy", "zone": "'
        for _ in range(100):
            yield b"z" * 1024
        yield b'"}'

    r = site.client.post("/api/v1/orders", headers=alice["auth"], content=chunks())
    assert (r.status_code, r.json()["code"]) == (413, "body_too_large")
    # a hub's batch has its own, larger bound
    hub = site.client.post(
        "/api/v1/hub/batches", headers={"Authorization": "Bearer x"}, content=b"x" * 6000
    )
    assert (hub.status_code, hub.json()["code"]) == (401, "bad_token")
    hub = site.client.post("/api/v1/hub/batches", content=b"x" * 9000)
    assert hub.status_code == 413
    assert site.client.get("/api/v1/orders", headers=alice["auth"]).json() == []
    site.platform.books.dispose()


def test_routing_errors_and_bugs_are_json_too(site: Site) -> None:
    r = site.client.get("/api/v1/nothing-here")
    assert (r.status_code, r.json()["code"]) == (404, "not_found")
    r = site.client.put("/api/v1/orders")
    assert (r.status_code, r.json()["code"]) == (405, "method_not_allowed")

    @site.app.get("/api/v1/test-bug")
    def bug() -> None:
        raise RuntimeError("a bug, not an input")

    r = TestClient(site.app, raise_server_exceptions=False).get("/api/v1/test-bug")
    assert (r.status_code, r.json()) == (
        500,
        {"code": "internal_error", "message": "internal error"},
    )


def test_hubs_beyond_the_multisig_size_register_and_leave_the_mint_authority_alone(
    site: Site,
) -> None:
    """The schemathesis run found the 9th hub answering 500 when hubs joined the oracle
    multisig (3 + 8 = 11, the SPL limit). Hubs now consent by signing the mint memo instead
    (docs/ledger.md): twelve register, and the mint authority's signers stay the parties'."""
    c = site.client
    signers = list(site.platform.dep.oracle_signers)

    def hub(k: int) -> dict[str, str]:
        key = bytes([k + 1]) * 32
        return {"hub_id": f"hub-{k}", "public_key": key.hex(), "token": f"token-{k}-" + "t" * 24}

    for k in range(12):
        r = c.post("/api/v1/admin/hubs", headers=ADMIN_H, json=hub(k))
        assert r.status_code == 201, r.text
    batch = {"epoch": 1, "header": "", "hub_signature": "0" * 128, "readings": []}
    r = c.post(
        "/api/v1/hub/batches", headers={"Authorization": f"Bearer {hub(11)['token']}"}, json=batch
    )
    assert (r.status_code, r.json()["code"]) == (422, "malformed_header")
    assert list(site.platform.dep.oracle_signers) == signers
