"""The market's state lives in the database: a CDA match survives a crash (the book is
rebuilt from the database at start, the executions are settled at the epoch's end), and a
partly filled order cancelled after a restart gives back only what it did not trade. On
SQLite and PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from databases import database
from platform_site import EPOCH_S, Clock, Site, fund, signup
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from gridtokenx import audit
from gridtokenx.errors import Conflict
from gridtokenx.market.config import Mechanism

SELL = {"side": "sell", "quantity_wh": 1_000, "price": 3_000_000}


class Crashable:
    """A CDA platform whose process can die (its memory dropped) and start again."""

    def __init__(self, data: Path, url: str | None) -> None:
        self.data, self.url, self.clock = data, url, Clock()
        self.site = Site(data, url, self.clock, mechanism=Mechanism.CDA)

    def crash_and_restart(self) -> Site:
        self.site.close()  # nothing of the market is flushed: what memory held is gone
        self.site = Site(self.data, self.url, self.clock, mechanism=Mechanism.CDA)
        return self.site


@pytest.fixture(params=["sqlite", "postgresql"])
def cda(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Crashable]:
    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    monkeypatch.delenv("SOLANA_RPC_URL", raising=False)
    with database(request.param, tmp_path) as url:
        c = Crashable(tmp_path / "platform", None if request.param == "sqlite" else url)
        yield c
        c.site.close()


def wallet(s: Site, user: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = s.client.get("/api/v1/wallet", headers=user["auth"]).json()
    return body


def orders(s: Site, user: dict[str, Any]) -> list[tuple[int, str]]:
    rows = s.client.get("/api/v1/orders", headers=user["auth"]).json()
    return [(o["filled_wh"], o["status"]) for o in rows]


def test_a_cda_match_survives_a_crash_and_is_settled_once(cda: Crashable) -> None:
    s = cda.site
    seller, buyer = signup(s.client, "s@x.org"), signup(s.client, "b@x.org", "consumer")
    late = signup(s.client, "l@x.org", "consumer")
    fund(s, seller, grx=1_000)
    fund(s, buyer, thb=10_000_000)
    fund(s, late, thb=10_000_000)
    assert s.client.post("/api/v1/orders", headers=seller["auth"], json=SELL).status_code == 201
    buy = {"side": "buy", "quantity_wh": 600, "price": 4_000_000}
    r = s.client.post("/api/v1/orders", headers=buyer["auth"], json=buy)
    assert (r.json()["filled_wh"], r.json()["status"]) == (600, "filled")  # matched at once
    epoch = s.trading.market.epoch

    s = cda.crash_and_restart()
    assert orders(s, seller) == [(600, "partially_filled")]
    assert s.client.get("/api/v1/market/book").json()["depth"] == {
        "*": {"bids": [], "asks": [[3_000_000, 400]]}
    }
    rest = {"side": "buy", "quantity_wh": 400, "price": 4_000_000}
    r = s.client.post("/api/v1/orders", headers=late["auth"], json=rest)
    assert (r.json()["filled_wh"], r.json()["status"]) == (400, "filled")  # the rebuilt book
    cda.clock.now += EPOCH_S
    assert s.trading.tick() == [epoch]
    done = s.client.get(f"/api/v1/market/epochs/{epoch}").json()
    assert (done["state"], done["volume_wh"], done["trades"]) == ("settled", 1_000, 2)
    assert done["clearing_price"] == 3_000_000
    # 600 Wh and 400 Wh at the resting 3 THB/kWh; 1% fee from the seller
    assert wallet(s, buyer)["grx_wh"] == 600
    assert wallet(s, buyer)["thb_micro"] == 10_000_000 - 1_800_000  # the rest came back
    assert wallet(s, late)["grx_wh"] == 400
    assert wallet(s, late)["thb_micro"] == 10_000_000 - 1_200_000
    assert wallet(s, seller)["thb_micro"] == (1_800_000 - 18_000) + (1_200_000 - 12_000)
    assert wallet(s, seller)["grx_wh"] == 0
    assert orders(s, seller) == [(1_000, "filled")]

    s = cda.crash_and_restart()  # and after another restart nothing is paid again
    assert wallet(s, seller)["thb_micro"] == 2_970_000
    report = audit.run(s.platform.dep, s.platform.books)
    assert report.checked["settlements"] == 1
    assert [f.split(": ", 1)[1] for f in report.failures] == ["GRX minted without one mint memo"]


def test_a_partly_filled_order_cancelled_after_a_restart_returns_only_its_rest(
    cda: Crashable,
) -> None:
    s = cda.site
    seller, buyer = signup(s.client, "s@x.org"), signup(s.client, "b@x.org", "consumer")
    fund(s, seller, grx=1_000)
    fund(s, buyer, thb=10_000_000)
    sell = s.client.post("/api/v1/orders", headers=seller["auth"], json=SELL).json()
    buy = {"side": "buy", "quantity_wh": 250, "price": 3_500_000}
    assert s.client.post("/api/v1/orders", headers=buyer["auth"], json=buy).status_code == 201
    epoch = s.trading.market.epoch

    s = cda.crash_and_restart()
    r = s.client.delete(f"/api/v1/orders/{sell['order_id']}", headers=seller["auth"])
    assert (r.json()["filled_wh"], r.json()["status"]) == (250, "cancelled")
    assert wallet(s, seller)["grx_wh"] == 750  # the untraded rest, at once
    cda.clock.now += EPOCH_S
    assert s.trading.tick() == [epoch]
    assert wallet(s, seller)["thb_micro"] == 750_000 - 7_500
    assert wallet(s, buyer)["grx_wh"] == 250
    assert wallet(s, buyer)["thb_micro"] == 10_000_000 - 750_000
    seller_key = Pubkey.from_string(seller["wallet"])
    assert s.platform.dep.grx.balance(seller_key) == 750
    report = audit.run(s.platform.dep, s.platform.books)
    assert [f.split(": ", 1)[1] for f in report.failures] == ["GRX minted without one mint memo"]


def test_a_batch_awaiting_co_signature_after_a_restart_is_refused_then_retried_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The proposals are kept in the books (every co-signature reads them there); the
    embedded chain forgets its blockhashes at a restart, so the hub's signatures of the old
    ones are answered stale_proposal, its retry gets fresh ones, and the mint lands once."""
    from nacl.signing import SigningKey
    from platform_site import hub_batch, hub_signatures
    from sqlalchemy import func, select

    from gridtokenx.adapters import books
    from gridtokenx.ledger.oracle import Evidence
    from gridtokenx.services.site import Platform
    from gridtokenx.wire import batch as wire_batch

    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    monkeypatch.delenv("SOLANA_RPC_URL", raising=False)
    owner = Keypair().pubkey()
    hub, meter = SigningKey.generate(), SigningKey.generate()
    first = Platform(tmp_path)
    first.register_hub("hub-1", bytes(hub.verify_key), "t" * 30)
    first.register_meter("m-1", bytes(meter.verify_key), owner)
    header, signature, readings = hub_batch(hub, meter, "m-1", 7, [0, 2_500, 6_000])
    encoded = wire_batch.encode_header(header)
    out = first.receive_batch("hub-1", 7, encoded, signature, readings)
    assert out.state == "sign" and out.proposals

    def pending(p: Platform) -> int:
        with p.books.connect() as c:
            q = select(func.count()).select_from(books.cosign_pending)
            return int(c.execute(q).scalar_one())

    assert pending(first) == len(out.proposals)
    evidence = Evidence(header, signature, tuple(readings))
    sigs = hub_signatures(hub, out.proposals, evidence)
    first.ledger.close()  # type: ignore[attr-defined]
    first.books.dispose()

    again = Platform(tmp_path)  # the platform restarted while the hub was signing
    with pytest.raises(Conflict) as err:
        again.sign_batch("hub-1", 7, sigs)
    assert err.value.code == "stale_proposal" and pending(again) == 0
    out = again.receive_batch("hub-1", 7, encoded, signature, readings)  # the hub's retry
    done = again.sign_batch("hub-1", 7, hub_signatures(hub, out.proposals, evidence))
    assert done.state == "done" and len(done.transactions) == len(out.proposals)
    assert again.dep.grx.balance(owner) == 6_000 and pending(again) == 0
    with pytest.raises(Conflict) as err:  # signed once: nothing is pending any more
        again.sign_batch("hub-1", 7, sigs)
    assert err.value.code == "stale_proposal"
    assert again.receive_batch("hub-1", 7, encoded, signature, readings).state == "done"
    assert again.dep.grx.balance(owner) == 6_000  # minted once
    again.ledger.close()  # type: ignore[attr-defined]
    again.books.dispose()


def test_an_operators_halt_outlives_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from platform_site import ADMIN_H

    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    monkeypatch.delenv("SOLANA_RPC_URL", raising=False)
    clock = Clock()
    s = Site(tmp_path, None, clock)
    seller, buyer = signup(s.client, "s@x.org"), signup(s.client, "b@x.org", "consumer")
    fund(s, seller, grx=1_000)
    fund(s, buyer, thb=10_000_000)
    assert s.client.post("/api/v1/orders", headers=seller["auth"], json=SELL).status_code == 201
    buy = {"side": "buy", "quantity_wh": 400, "price": 4_000_000}
    assert s.client.post("/api/v1/orders", headers=buyer["auth"], json=buy).status_code == 201
    epoch = s.trading.market.epoch
    r = s.client.post("/api/v1/admin/market/halt", headers=ADMIN_H, json={"reason": "storm"})
    assert r.status_code == 200
    clock.now += 2 * EPOCH_S  # the halt lasts past the epoch's end
    s.close()

    s = Site(tmp_path, None, clock)  # a restart: still halted, the epoch still open
    r = s.client.post("/api/v1/orders", headers=buyer["auth"], json=buy)
    assert (r.status_code, r.json()["code"]) == (409, "market_halted")
    assert s.trading.tick() == []
    assert s.client.get(f"/api/v1/market/epochs/{epoch}").status_code == 404
    assert s.client.post("/api/v1/admin/market/resume", headers=ADMIN_H).status_code == 200
    assert s.trading.tick() == [epoch]  # cleared with the orders placed before the halt
    done = s.client.get(f"/api/v1/market/epochs/{epoch}").json()
    assert (done["state"], done["volume_wh"]) == ("settled", 400)
    s.close()
    s = Site(tmp_path, None, clock)  # and resumed stays resumed
    assert s.client.post("/api/v1/orders", headers=buyer["auth"], json=buy).status_code == 201
    s.close()
