"""The platform API: accounts and tokens, orders with escrow, epochs cleared and settled on
the embedded ledger, admin, the audit log, rate limits, restart recovery; on SQLite and
PostgreSQL."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import platform_site
import pytest
from databases import database
from platform_site import EPOCH_S, Clock, admin_h, fund, signup
from services import unavailable
from solders.keypair import Keypair
from sqlalchemy import update

from gridtokenx import auditlog
from gridtokenx.accounts import Accounts
from gridtokenx.adapters.ratelimit import MemoryLimiter, RedisLimiter
from gridtokenx.adapters.tables import audit_log


class Site(platform_site.Site):
    """The API's tests' site: the default rate limits, a limiter of the test's choosing."""

    def __init__(self, data: Path, url: str | None, clock: Clock, limiter: Any = None) -> None:
        super().__init__(data, url, clock, limiter=limiter, limits_per_minute=None)


@pytest.fixture(params=["sqlite", "postgresql"])
def site(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Site, Clock, Path, str | None]]:
    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    monkeypatch.delenv("SOLANA_RPC_URL", raising=False)
    with database(request.param, tmp_path) as url:
        books_url = None if request.param == "sqlite" else url
        clock = Clock()
        s = Site(tmp_path / "platform", books_url, clock)
        yield s, clock, tmp_path / "platform", books_url
        s.close()


def test_accounts_tokens_and_auth_failures(site: tuple[Site, Clock, Path, str | None]) -> None:
    s, _, _, _ = site
    c = s.client
    alice = signup(c, "alice@example.org")
    assert c.get("/api/v1/me", headers=alice["auth"]).json()["email"] == "alice@example.org"
    assert (
        c.post(
            "/api/v1/auth/register", json={"email": "alice@example.org", "password": "x" * 12}
        ).json()["code"]
        == "email_taken"
    )
    assert (
        c.post("/api/v1/auth/register", json={"email": "a@b.c", "password": "short"}).status_code
        == 422
    )
    assert (
        c.post(
            "/api/v1/auth/register", json={"email": "x@b.c", "password": "x" * 12, "role": "admin"}
        ).status_code
        == 422
    )
    assert (
        c.post(
            "/api/v1/auth/login", json={"email": "alice@example.org", "password": "wrong one!!"}
        ).json()["code"]
        == "bad_credentials"
    )
    assert c.get("/api/v1/me").json()["code"] == "no_token"
    assert (
        c.get("/api/v1/me", headers={"Authorization": "Bearer nonsense.x.y"}).json()["code"]
        == "bad_token"
    )
    expired = Accounts(s.platform.books, b"k" * 32, clock=lambda: time.time() - 3600).login(
        "alice@example.org", "correct horse 1"
    )
    r = c.get("/api/v1/me", headers={"Authorization": f"Bearer {expired.access_token}"})
    assert (r.status_code, r.json()["code"]) == (401, "token_expired")
    # refresh rotates; a replayed refresh token revokes the whole login
    fresh = c.post("/api/v1/auth/refresh", json={"refresh_token": alice["refresh_token"]}).json()
    assert (
        c.get(
            "/api/v1/me", headers={"Authorization": f"Bearer {fresh['access_token']}"}
        ).status_code
        == 200
    )
    replay = c.post("/api/v1/auth/refresh", json={"refresh_token": alice["refresh_token"]})
    assert replay.json()["code"] == "refresh_token_reused"
    assert (
        c.post("/api/v1/auth/refresh", json={"refresh_token": fresh["refresh_token"]}).status_code
        == 401
    )
    bob = signup(c, "bob@example.org")
    assert (
        c.post("/api/v1/auth/logout", json={"refresh_token": bob["refresh_token"]}).status_code
        == 204
    )
    assert (
        c.post("/api/v1/auth/refresh", json={"refresh_token": bob["refresh_token"]}).status_code
        == 401
    )
    # the logout ended bob's access token too; logged in again, he is still not an admin
    assert c.get("/api/v1/me", headers=bob["auth"]).json()["code"] == "login_revoked"
    relogin = c.post(
        "/api/v1/auth/login", json={"email": "bob@example.org", "password": "correct horse 1"}
    ).json()
    bob["auth"] = {"Authorization": f"Bearer {relogin['access_token']}"}
    assert (
        c.post("/api/v1/admin/market/halt", headers=bob["auth"], json={"reason": "x"}).json()[
            "code"
        ]
        == "not_admin"
    )
    # sign-in with a wallet key: sign the server's nonce
    key = Keypair()
    r = c.post(
        "/api/v1/auth/register",
        json={
            "email": "carol@example.org",
            "password": "correct horse 1",
            "wallet": str(key.pubkey()),
        },
    )
    assert r.json()["custodial"] is False
    n = c.get("/api/v1/auth/nonce", params={"wallet": str(key.pubkey())}).json()
    signed = str(key.sign_message(n["message"].encode()))
    ok = c.post(
        "/api/v1/auth/wallet",
        json={"wallet": str(key.pubkey()), "nonce": n["nonce"], "signature": signed},
    )
    assert ok.status_code == 200 and ok.json()["access_token"]
    again = c.post(
        "/api/v1/auth/wallet",
        json={"wallet": str(key.pubkey()), "nonce": n["nonce"], "signature": signed},
    )
    assert again.json()["code"] == "bad_nonce"  # one use


def test_orders_escrow_clear_settle_and_ownership(
    site: tuple[Site, Clock, Path, str | None],
) -> None:
    s, clock, _, _ = site
    c = s.client
    seller, buyer, other = (
        signup(c, "s@x.org"),
        signup(c, "b@x.org", "consumer"),
        signup(c, "o@x.org"),
    )
    fund(s, seller, grx=5_000)
    fund(s, buyer, thb=50_000_000)
    sell = c.post(
        "/api/v1/orders",
        headers={**seller["auth"], "Idempotency-Key": "k1"},
        json={"side": "sell", "quantity_wh": 3_000, "price": 3_000_000},
    )
    assert sell.status_code == 201, sell.text
    retry = c.post(
        "/api/v1/orders",
        headers={**seller["auth"], "Idempotency-Key": "k1"},
        json={"side": "sell", "quantity_wh": 3_000, "price": 3_000_000},
    )
    assert retry.json() == sell.json()  # the same order, not a second one
    assert len(c.get("/api/v1/orders", headers=seller["auth"]).json()) == 1
    assert (
        c.get("/api/v1/wallet", headers=seller["auth"]).json()["grx_wh"] == 2_000
    )  # 3000 escrowed
    bad = c.post(
        "/api/v1/orders", headers=buyer["auth"], json={"side": "buy", "quantity_wh": 0, "price": 1}
    )
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_request"
    poor = c.post(
        "/api/v1/orders",
        headers=other["auth"],
        json={"side": "buy", "quantity_wh": 1_000, "price": 4_000_000},
    )
    assert poor.json()["code"] == "insufficient_funds"
    buy = c.post(
        "/api/v1/orders",
        headers=buyer["auth"],
        json={"side": "buy", "quantity_wh": 2_000, "price": 4_000_000},
    )
    assert buy.status_code == 201
    # someone else's order cannot be cancelled
    r = c.delete(f"/api/v1/orders/{buy.json()['order_id']}", headers=other["auth"])
    assert (r.status_code, r.json()["code"]) == (422, "unknown_order")
    assert c.get("/api/v1/market/book").json()["depth"]
    current = c.get("/api/v1/market/epochs/current").json()
    assert 0 < current["seconds_left"] <= EPOCH_S
    clock.now += EPOCH_S  # the epoch ends: the scheduler clears and settles it
    assert s.trading.tick() == [current["epoch"]]
    done = c.get(f"/api/v1/market/epochs/{current['epoch']}").json()
    assert done["volume_wh"] == 2_000 and done["state"] == "settled" and done["transactions"]
    w_seller = c.get("/api/v1/wallet", headers=seller["auth"]).json()
    w_buyer = c.get("/api/v1/wallet", headers=buyer["auth"]).json()
    assert w_seller["grx_wh"] == 3_000 and w_buyer["grx_wh"] == 2_000  # 1000 unsold came back
    price = done["clearing_price"]
    value = 2_000 * price // 1000
    assert w_seller["thb_micro"] == value - value // 100  # 1% fee
    assert w_buyer["thb_micro"] == 50_000_000 - value  # the rest of the escrow came back
    assert w_buyer["transactions"]  # with the settlement's signature
    mine = c.get("/api/v1/orders", headers=seller["auth"]).json()
    assert [(o["filled_wh"], o["status"]) for o in mine] == [(2_000, "expired")]
    assert c.get("/api/v1/market/candles").json()[-1]["price"] == price
    from gridtokenx import audit

    # the audit reconciles settlement and escrow, and flags the GRX this test minted
    # directly (fund(), no batch behind it) as exactly what it is
    report = audit.run(s.platform.dep, s.platform.books)
    assert report.checked["settlements"] == 1
    assert [f.split(": ", 1)[1] for f in report.failures] == ["GRX minted without one mint memo"]


def test_admin_halts_and_the_audit_log_is_a_hash_chain(
    site: tuple[Site, Clock, Path, str | None],
) -> None:
    s, clock, _, _ = site
    c = s.client
    buyer = signup(c, "b@x.org", "consumer")
    fund(s, buyer, thb=10_000_000)
    # the fiat off-ramp burns THB against a payout, once per reference
    out = {"user_id": buyer["user_id"], "micro_thb": 1_000_000, "reference": "payout-1"}
    first = c.post("/api/v1/admin/withdraw", headers=admin_h(), json=out).json()
    assert c.post("/api/v1/admin/withdraw", headers=admin_h(), json=out).json() == first
    assert c.get("/api/v1/wallet", headers=buyer["auth"]).json()["thb_micro"] == 9_000_000
    assert (
        c.post(
            "/api/v1/admin/market/halt", headers=admin_h(), json={"reason": "grid emergency"}
        ).status_code
        == 200
    )
    r = c.post(
        "/api/v1/orders",
        headers=buyer["auth"],
        json={"side": "buy", "quantity_wh": 100, "price": 3_000_000},
    )
    assert (r.status_code, r.json()["code"]) == (409, "market_halted")
    clock.now += EPOCH_S
    assert s.trading.tick() == []  # a halted market does not close its epoch
    c.post("/api/v1/admin/market/resume", headers=admin_h())
    assert (
        c.post(
            "/api/v1/orders",
            headers=buyer["auth"],
            json={"side": "buy", "quantity_wh": 100, "price": 3_000_000},
        ).status_code
        == 201
    )
    log = c.get("/api/v1/admin/audit", headers=admin_h()).json()
    actions = [e["action"] for e in log["entries"]]
    assert {"market.halt", "market.resume", "order.place", "auth.login", "admin.topup"} <= set(
        actions
    )
    assert log["broken_at"] is None
    with s.platform.books.begin() as conn:
        conn.execute(
            update(audit_log)
            .where(audit_log.c.action == "market.halt")
            .values(detail='{"reason":"nothing"}')
        )
    assert auditlog.verify(s.platform.books) is not None
    # suspending a user freezes its wallet and refuses its tokens
    r = c.post(f"/api/v1/admin/users/{buyer['user_id']}/suspend", headers=admin_h())
    assert r.status_code == 200
    assert c.get("/api/v1/me", headers=buyer["auth"]).json()["code"] == "suspended"


def test_the_audit_log_pages_by_cursor(site: tuple[Site, Clock, Path, str | None]) -> None:
    s, _, _, _ = site
    c, books = s.client, s.platform.books
    before = auditlog.entries(books, 1000)
    assert before == []  # a new site has logged nothing yet
    seqs = [auditlog.append(books, "op", "test.page", {"k": k}) for k in range(5)]
    assert seqs == [1, 2, 3, 4, 5]

    def page(**params: Any) -> dict[str, Any]:
        r = c.get("/api/v1/admin/audit", headers=admin_h(), params=params)
        assert r.status_code == 200, r.text
        return dict(r.json())

    first = page(limit=2)
    assert ([e["seq"] for e in first["entries"]], first["next_cursor"]) == ([5, 4], "4")
    second = page(limit=2, cursor=first["next_cursor"])
    assert ([e["seq"] for e in second["entries"]], second["next_cursor"]) == ([3, 2], "2")
    last = page(limit=2, cursor=second["next_cursor"])
    assert ([e["seq"] for e in last["entries"]], last["next_cursor"]) == ([1], None)
    assert [e["detail"] for e in last["entries"]] == [{"k": 0}]
    exact = page(limit=5)  # a page that ends exactly at the oldest entry says so
    assert ([e["seq"] for e in exact["entries"]], exact["next_cursor"]) == ([5, 4, 3, 2, 1], None)
    old_client = page()  # no parameters: the newest 100, as before cursors
    assert [e["seq"] for e in old_client["entries"]] == [5, 4, 3, 2, 1]
    assert old_client["next_cursor"] is None and old_client["broken_at"] is None
    for bad in ("x", "-1", "1" * 19):
        r = c.get("/api/v1/admin/audit", headers=admin_h(), params={"cursor": bad})
        assert r.status_code == 422, (bad, r.text)
    assert len(auditlog.entries(books, 1000)) == 5  # reading pages logged nothing


def test_my_orders_page_by_cursor(site: tuple[Site, Clock, Path, str | None]) -> None:
    s, _, _, _ = site
    c = s.client
    buyer = signup(c, "pages@x.org", "consumer")
    fund(s, buyer, thb=10_000_000)
    placed = []
    for k in range(5):
        r = c.post(
            "/api/v1/orders",
            headers=buyer["auth"],
            json={"side": "buy", "quantity_wh": 100 + k, "price": 3_000_000},
        )
        assert r.status_code == 201, r.text
        placed.append(r.json()["order_id"])
    newest_first = placed[::-1]

    def page(**params: Any) -> tuple[list[str], str | None]:
        r = c.get("/api/v1/orders", headers=buyer["auth"], params=params)
        assert r.status_code == 200, r.text
        return [o["order_id"] for o in r.json()], r.headers.get("Next-Cursor")

    assert page() == (newest_first, None)  # an old client: the whole list, no header
    first, cursor = page(limit=2)
    assert first == newest_first[:2] and cursor is not None
    second, cursor = page(limit=2, cursor=cursor)
    assert second == newest_first[2:4] and cursor is not None
    assert page(limit=2, cursor=cursor) == (newest_first[4:], None)
    assert page(limit=5) == (newest_first, None)  # ends exactly at the oldest: no next page
    other = signup(c, "other@x.org", "consumer")  # a cursor never shows another's orders
    r = c.get("/api/v1/orders", headers=other["auth"], params={"cursor": cursor or "9.9.o-f"})
    assert (r.status_code, r.json()) == (200, [])
    for bad in ("1.2", "x.1.o-1", "1.1.o_1", "1" * 19 + ".1.o-1"):
        r = c.get("/api/v1/orders", headers=buyer["auth"], params={"cursor": bad})
        assert r.status_code == 422, (bad, r.text)


def test_market_parameters_change_and_survive_a_restart(
    site: tuple[Site, Clock, Path, str | None],
) -> None:
    s, clock, data, url = site
    c = s.client
    r = c.put(
        "/api/v1/admin/market/parameters",
        headers=admin_h(),
        json={"min_price": 250, "max_quantity_wh": 5_000},
    )
    assert r.status_code == 200 and r.json()["min_price"] == 250
    # the fee is not the admin's alone: a governance proposal (tests/test_governance_api.py)
    r = c.put("/api/v1/admin/market/parameters", headers=admin_h(), json={"fee_bps": 250})
    assert (r.status_code, r.json()["code"]) == (409, "fee_by_governance")
    bad = c.put(
        "/api/v1/admin/market/parameters", headers=admin_h(), json={"min_price": 9, "max_price": 5}
    )
    assert (bad.status_code, bad.json()["code"]) == (422, "bad_parameters")
    buyer = signup(c, "b@x.org", "consumer")
    fund(s, buyer, thb=10**9)
    big = c.post(
        "/api/v1/orders",
        headers=buyer["auth"],
        json={"side": "buy", "quantity_wh": 6_000, "price": 3_000_000},
    )
    assert big.status_code == 422  # above the new largest order
    s.platform.ledger.close()  # type: ignore[attr-defined]
    s.close()
    again = Site(data, url, clock)
    assert again.trading.parameters()["min_price"] == 250
    again.close()


def test_restart_settles_an_interrupted_epoch_exactly_once(
    site: tuple[Site, Clock, Path, str | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    s, clock, data, url = site
    c = s.client
    seller, buyer = signup(c, "s@x.org"), signup(c, "b@x.org", "consumer")
    fund(s, seller, grx=1_000)
    fund(s, buyer, thb=10_000_000)
    c.post(
        "/api/v1/orders",
        headers=seller["auth"],
        json={"side": "sell", "quantity_wh": 1_000, "price": 3_000_000},
    )
    c.post(
        "/api/v1/orders",
        headers=buyer["auth"],
        json={"side": "buy", "quantity_wh": 1_000, "price": 4_000_000},
    )
    epoch = s.trading.market.epoch
    # the platform dies while settling: after the trades are in the books, before the chain
    import gridtokenx.ledger.settlement as st

    real = st.settle_epoch
    monkeypatch.setattr(
        st, "settle_epoch", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt())
    )
    clock.now += EPOCH_S
    with pytest.raises(KeyboardInterrupt):
        s.trading.tick()
    monkeypatch.setattr(st, "settle_epoch", real)
    s.platform.ledger.close()  # type: ignore[attr-defined]
    s.close()
    again = Site(data, url, clock)  # a restart: recovery clears and settles the epoch
    row = again.trading.epoch_row(epoch)
    assert row is not None and row["volume_wh"] == 1_000 and row["state"] == "settled"
    dep = again.platform.dep
    from solders.pubkey import Pubkey

    assert dep.grx.balance(Pubkey.from_string(buyer["wallet"])) == 1_000
    again.trading.recover()  # and again: nothing more
    assert dep.grx.balance(Pubkey.from_string(buyer["wallet"])) == 1_000
    from gridtokenx import audit

    report = audit.run(dep, again.platform.books)
    assert report.checked["settlements"] == 1 and len(report.failures) == 1  # fund()'s mint
    again.close()


def test_rate_limits_answer_429_with_retry_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    # a stopped clock: the minute's window does not end between the requests
    s = Site(tmp_path, None, Clock(), limiter=MemoryLimiter(clock=lambda: 30.0))
    alice = signup(s.client, "a@x.org")
    codes = [s.client.get("/api/v1/me", headers=alice["auth"]).status_code for _ in range(101)]
    assert codes[:100] == [200] * 100 and codes[100] == 429
    r = s.client.get("/api/v1/me", headers=alice["auth"])
    assert (r.json()["code"], r.headers["Retry-After"]) == ("rate_limited", "31")
    limiter = MemoryLimiter(clock=lambda: 0.0)
    assert [limiter.hit("ip:1", 300) for _ in range(301)][-1] > 0


def test_redis_limits_are_shared_between_instances() -> None:
    import redis

    try:
        redis.Redis.from_url("redis://127.0.0.1:6379/0").ping()
    except redis.RedisError as exc:
        unavailable(f"Redis at 127.0.0.1:6379 is not usable: {exc.__class__.__name__}")
    key = f"test-{os.urandom(4).hex()}"
    a, b = RedisLimiter("redis://127.0.0.1:6379/0"), RedisLimiter("redis://127.0.0.1:6379/0")
    hits = [(a if k % 2 else b).hit(key, 10) for k in range(11)]
    assert hits[:10] == [0] * 10 and hits[10] > 0
