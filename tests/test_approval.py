"""Frozen until approved (issue #14 item 5): a new account's GRX account stays frozen on the
chain and it cannot place an order (`not_approved`) until an operator approves it, by the
admin API or the operator page; hubs and meters are approved and suspended from the page too.
The demo's `--auto-approve` (a visible setting) approves each sign-up at once."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from nacl.signing import SigningKey
from platform_site import ADMIN_H, Clock, Site, fund, signup
from solders.pubkey import Pubkey
from sqlalchemy import func, select

from gridtokenx import auditlog
from gridtokenx.adapters import books
from gridtokenx.adapters.tables import market_orders
from gridtokenx.keynames import user_key
from gridtokenx.ledger.backend import LedgerError


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    monkeypatch.delenv("SOLANA_RPC_URL", raising=False)
    s = Site(tmp_path / "platform", None, Clock(), auto_approve=False)
    yield s
    s.close()


def order_count(site: Site) -> int:
    with site.platform.books.connect() as c:
        return int(c.execute(select(func.count()).select_from(market_orders)).scalar_one())


def test_a_new_household_cannot_trade_until_an_operator_approves_it(site: Site) -> None:
    c = site.client
    pat = signup(c, "pat@example.org")
    assert pat["status"] == "pending"
    assert c.get("/api/v1/me", headers=pat["auth"]).json()["status"] == "pending"
    wallet = Pubkey.from_string(pat["wallet"])
    dep = site.platform.dep
    # on the chain, not only the books: both of its token accounts are frozen
    assert (dep.grx.is_frozen(wallet), dep.thb.is_frozen(wallet)) == (True, True)
    assert c.get("/api/v1/wallet", headers=pat["auth"]).json()["frozen"] is True
    topup = {"user_id": pat["user_id"], "micro_thb": 5_000_000, "reference": "dep-1"}
    r = c.post("/api/v1/admin/topup", headers=ADMIN_H, json=topup)
    assert (r.status_code, r.json()["code"]) == (409, "not_approved")  # THB only after approval
    assert dep.thb.balance(wallet) == 0 == dep.thb.supply()
    order = {"side": "buy", "quantity_wh": 1000, "price": 4_000_000}
    r = c.post("/api/v1/orders", headers=pat["auth"], json=order)
    assert r.status_code == 403
    assert r.json()["code"] == "not_approved"
    sell = {"side": "sell", "quantity_wh": 1000, "price": 4_000_000}
    r = c.post("/api/v1/orders", headers=pat["auth"], json=sell)
    assert (r.status_code, r.json()["code"]) == (403, "not_approved")
    assert order_count(site) == 0
    # the chain itself refuses a transfer out of (or into) a frozen account, whoever signs
    key = site.platform.keys.get(user_key(pat["user_id"]))
    escrow = dep.escrow.pubkey()
    for mint in (dep.grx, dep.thb):
        with pytest.raises(LedgerError) as err:
            dep.ledger.send([mint.transfer_ix(wallet, escrow, 0)], [key])
        assert err.value.code == "account_frozen"

    r = c.post(f"/api/v1/admin/users/{pat['user_id']}/approve", headers=ADMIN_H)
    assert r.status_code == 200 and r.json() == {"user_id": pat["user_id"], "status": "active"}
    assert (dep.grx.is_frozen(wallet), dep.thb.is_frozen(wallet)) == (False, False)
    fund(site, pat, thb=5_000_000)
    r = c.post("/api/v1/orders", headers=pat["auth"], json=order)
    assert r.status_code == 201, r.text
    assert order_count(site) == 1
    assert dep.thb.balance(wallet) == 5_000_000 - 4_000_000
    actions = [e["action"] for e in auditlog.entries(site.platform.books, 20)]
    assert "admin.user_approve" in actions
    # the thaw's memo on the chain names the owner and who approved it
    thaws = [t for t in dep.ledger.memo_index() if t.startswith(f"gtx1 thaw {wallet} ")]
    assert len(thaws) == 1 and thaws[0].endswith(" operator")


def test_auto_approve_is_the_demo_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    demo = Site(tmp_path / "demo", None, Clock(), auto_approve=True)
    try:
        pat = signup(demo.client, "pat@example.org")
        assert pat["status"] == "active"
        assert demo.platform.dep.grx.is_frozen(Pubkey.from_string(pat["wallet"])) is False
    finally:
        demo.close()


def operator_session(site: Site) -> None:
    """An admin account signed in on the site's client (the pages' cookie)."""
    wallet = site.platform.keys.ensure(user_key("op")).pubkey()
    site.accounts.register("op@example.org", "correct horse 1", "admin", wallet, user_id="op")
    r = site.client.post("/login", data={"email": "op@example.org", "password": "correct horse 1"})
    assert r.status_code == 200


def test_the_operator_page_approves_users_hubs_and_meters(site: Site) -> None:
    pat = signup(site.client, "pat@example.org")
    hub, meter = SigningKey.generate(), SigningKey.generate()
    site.platform.register_hub("hub-1", bytes(hub.verify_key), "t" * 30)
    site.platform.register_meter("m-1", bytes(meter.verify_key), Pubkey.from_string(pat["wallet"]))
    site.client.cookies.clear()
    # a household is not an operator: its posts to the operator's forms change nothing
    r = site.client.post(f"/admin/users/{pat['user_id']}/approve")
    assert r.url.path == "/login"
    r = site.client.post("/login", data={"email": "pat@example.org", "password": "correct horse 1"})
    assert "waits for an operator's approval" in site.client.get("/me").text
    site.client.post("/logout")
    assert site.accounts.user(pat["user_id"])["status"] == "pending"  # type: ignore[index]
    operator_session(site)
    page = site.client.get("/admin").text
    assert "New sign-ups are <b>pending</b>" in page
    assert f'action="/admin/users/{pat["user_id"]}/approve"' in page
    r = site.client.post(f"/admin/users/{pat['user_id']}/approve")
    assert r.url.path == "/admin" and r.url.params["notice"] == "User approved."
    assert site.accounts.user(pat["user_id"])["status"] == "active"  # type: ignore[index]
    assert site.platform.dep.grx.is_frozen(Pubkey.from_string(pat["wallet"])) is False

    assert 'action="/admin/meters/m-1/suspend"' in site.client.get("/admin").text
    r = site.client.post("/admin/meters/m-1/suspend")
    assert r.url.params["notice"] == "Meter m-1 suspended."
    r = site.client.post("/admin/hubs/hub-1/suspend")
    assert r.url.params["notice"] == "Hub hub-1 suspended."
    status = {m["meter_id"]: m["status"] for m in books.rows(site.platform.books, books.meters)}
    assert status == {"m-1": "suspended"}
    assert [h["status"] for h in books.rows(site.platform.books, books.hubs)] == ["suspended"]
    page = site.client.get("/admin").text
    assert 'action="/admin/hubs/hub-1/approve"' in page
    r = site.client.post("/admin/hubs/hub-1/approve")
    assert r.url.params["notice"] == "Hub hub-1 approved."
    r = site.client.post("/admin/meters/m-9/approve")  # unknown: a refusal, not a 500
    assert r.url.path == "/admin" and r.url.params["error"] == "m-9"
    r = site.client.post("/admin/meters/m-1/delete")  # not an action the page has
    assert r.url.path == "/login"
    actions = [e["action"] for e in auditlog.entries(site.platform.books, 20)]
    for action in ("admin.user_approve", "admin.meter_suspend", "admin.hub_suspend"):
        assert action in actions


def test_a_suspended_account_is_refused_in_the_batched_admission(site: Site) -> None:
    """Group commit admits a batch with one status query: a suspended account (its status set,
    whatever its tokens) gets 403 `suspended` from the placement itself, and nothing is placed."""
    from gridtokenx.errors import Forbidden
    from gridtokenx.market.errors import OrderRejected

    pat = signup(site.client, "sus@example.org")
    site.accounts.set_status(pat["user_id"], "suspended")
    with pytest.raises(OrderRejected) as refused:
        site.trading.place(pat["user_id"], "sell", 1000, 4_000_000)
    assert (refused.value.code, isinstance(refused.value, Forbidden)) == ("suspended", True)
    assert order_count(site) == 0
