"""A self-custody household end to end (issue #14 item 4), with the `gridtokenx wallet`
command line over real HTTP: new key in its encrypted file, sign-up, the operator's
approval, an allowance it signs, export -> GRX (and a burn against import within the
allowance), a sell order, settlement, a certificate it retires by signing the prepared
transaction. Its key is never in the platform's keystore, books or chain."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey
from platform_site import ADMIN_H, EPOCH_S, Clock, Site, fund, served, signup, submit
from services import gridtokenx
from solders.pubkey import Pubkey

from gridtokenx import audit
from gridtokenx.keynames import user_key
from gridtokenx.ledger.keystore import Keystore

PASS = {"GTX_WALLET_PASSPHRASE": "pat's long wallet passphrase", "GTX_WALLET_PASSWORD": "x" * 12}


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Site, Clock]]:
    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    monkeypatch.delenv("SOLANA_RPC_URL", raising=False)
    clock = Clock()
    s = Site(tmp_path / "platform", None, clock, auto_approve=False)
    yield s, clock
    s.close()


def test_a_self_custody_household_from_export_to_a_retired_certificate(
    site: tuple[Site, Clock], tmp_path: Path
) -> None:
    s, clock = site
    c, file = s.client, tmp_path / "home" / "wallet.json"
    file.parent.mkdir()

    def wallet(*args: str) -> Any:
        done = gridtokenx("wallet", *args, "--file", str(file), env={**PASS, "GTX_API": url})
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout) if done.stdout.startswith(("{", "[")) else done.stdout

    with served(s.app) as url:
        made = wallet("new")
        address = made["address"]
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
        assert wallet("address").strip() == address
        registered = wallet("register", "--email", "pat@example.org")
        assert (registered["custodial"], registered["status"]) == (False, "pending")
        # not approved yet: no order (the allowance is signed before, it moves nothing)
        approved = c.post(f"/api/v1/admin/users/{registered['user_id']}/approve", headers=ADMIN_H)
        assert approved.json()["status"] == "active"
        granted = wallet("approve", "--grx-wh", "4000", "--thb-micro", "0")
        assert set(granted) == {"transaction"}
        shown = wallet("balance")
        assert (shown["custodial"], shown["allowance_grx_wh"], shown["frozen"]) == (
            False,
            4_000,
            False,
        )
        # its meter exports 5 kWh and imports 300 Wh: GRX minted, 300 burned by the delegate
        hub, meter = SigningKey.generate(), SigningKey.generate()
        s.platform.register_hub("hub-1", bytes(hub.verify_key), "t" * 30)
        owner = Pubkey.from_string(address)
        s.platform.register_meter("m-1", bytes(meter.verify_key), owner)
        submit(s.platform, hub, meter, 1, [0, 5_000], [0, 300])
        shown = wallet("balance")
        assert (shown["grx_wh"], shown["allowance_grx_wh"]) == (4_700, 3_700)
        sell = wallet("order", "--side", "sell", "--quantity-wh", "2000", "--price", "4000000")
        assert sell["status"] == "open"
        buyer = signup(c, "bea@example.org", "consumer")
        c.post(f"/api/v1/admin/users/{buyer['user_id']}/approve", headers=ADMIN_H)
        fund(s, buyer, thb=50_000_000)
        buy = {"side": "buy", "quantity_wh": 2_000, "price": 4_000_000}
        assert c.post("/api/v1/orders", headers=buyer["auth"], json=buy).status_code == 201
        epoch = s.trading.current_epoch()
        clock.now += EPOCH_S
        assert s.trading.tick() == [epoch]
        done = c.get(f"/api/v1/market/epochs/{epoch}").json()
        assert (done["state"], done["volume_wh"]) == ("settled", 2_000)
        value = 2_000 * done["clearing_price"] // 1000
        shown = wallet("balance")
        assert (shown["grx_wh"], shown["thb_micro"], shown["allowance_grx_wh"]) == (
            2_700,
            value - value // 100,  # the 1% fee
            1_700,
        )
        # an order it places and cancels: its escrow comes back, the allowance stays spent
        other = wallet("order", "--side", "sell", "--quantity-wh", "500", "--price", "7900000")
        cancelled = wallet("cancel", other["order_id"])
        assert cancelled["status"] == "cancelled"
        assert wallet("balance")["grx_wh"] == 2_700
        # beyond the allowance left (1200): refused, nothing moves
        over = gridtokenx(
            "wallet",
            "order",
            "--side",
            "sell",
            "--quantity-wh",
            "1500",
            "--price",
            "4000000",
            "--file",
            str(file),
            env={**PASS, "GTX_API": url},
        )
        assert over.returncode == 1 and "insufficient_allowance" in over.stderr
        # its certificate for the 5 kWh, validated, then retired by its own signature
        cert = c.post(
            "/api/v1/admin/certificates",
            headers=ADMIN_H,
            json={"meter_id": "m-1", "period": "2026-06"},
        ).json()
        assert cert["wh"] == 5_000 and cert["holder"] == address
        r = c.post(f"/api/v1/admin/certificates/{cert['mint']}/validate", headers=ADMIN_H)
        assert r.json()["status"] == "active", r.text
        mine = wallet("certificates")
        assert [(x["mint"], x["status"]) for x in mine] == [(cert["mint"], "active")]
        retired = wallet(
            "certificates", "--retire", cert["mint"], "--beneficiary", "Pat's household"
        )
        assert (retired["mint"], retired["status"]) == (cert["mint"], "retired")
        # more export: a second certificate, which it transfers to the buyer by its signature
        submit(s.platform, hub, meter, 2, [6_000, 8_000], [300, 300])
        second = c.post(
            "/api/v1/admin/certificates",
            headers=ADMIN_H,
            json={"meter_id": "m-1", "period": "2026-07"},
        ).json()
        assert second["wh"] == 3_000
        c.post(f"/api/v1/admin/certificates/{second['mint']}/validate", headers=ADMIN_H)
        moved = wallet("certificates", "--transfer", second["mint"], "--to", buyer["wallet"])
        assert (moved["status"], moved["holder"]) == ("active", buyer["wallet"])
        theirs = c.get("/api/v1/certificates", headers=buyer["auth"]).json()
        assert [x["mint"] for x in theirs] == [second["mint"]]

    # the chain reconciles with the books (delegate-signed escrow and burns included)
    report = audit.run(s.platform.dep, s.platform.books)
    assert report.ok, report.failures
    # the key never left its file: not in the platform's keystore, books or chain
    seed = bytes(Keystore(file, PASS["GTX_WALLET_PASSPHRASE"]).get("wallet"))[:32]
    assert s.platform.keys.name_of(address) is None
    assert user_key(registered["user_id"]) not in s.platform.keys
    for path in [*s.platform.data.rglob("*"), file]:
        if path.is_file():
            blob = path.read_bytes()
            assert seed not in blob and seed.hex().encode() not in blob, path


def test_the_wallet_signs_only_what_it_was_asked_for() -> None:
    """What a household's tool refuses to sign, whatever the platform prepares."""
    from solders.keypair import Keypair
    from solders.message import Message

    from gridtokenx.cli.wallet import approval_problem, retire_problem
    from gridtokenx.ledger.backend import memo
    from gridtokenx.ledger.tokens import Mint

    me, delegate, thief, payer = (Keypair().pubkey() for _ in range(4))
    grx, thb = Mint(None, Keypair().pubkey(), 3), Mint(None, Keypair().pubkey(), 6)  # type: ignore[arg-type]

    def message(*ixs: Any) -> Message:
        return Message(list(ixs), payer)

    asked = message(grx.approve_ix(me, delegate, 4_000), thb.approve_ix(me, delegate, 0))
    assert approval_problem(asked, me, delegate, 4_000, 0) is None
    assert approval_problem(asked, me, delegate, 5_000, 0) == "not the amounts asked for"
    other = message(grx.approve_ix(me, thief, 4_000), thb.approve_ix(me, delegate, 0))
    assert approval_problem(other, me, delegate, 4_000, 0) == (
        "not an approval of this wallet's accounts to the platform's delegate"
    )
    sneaky = message(grx.approve_ix(me, delegate, 4_000), grx.transfer_ix(me, thief, 1))
    assert approval_problem(sneaky, me, delegate, 4_000, 0) == "not two ApproveChecked instructions"
    cert = Mint(None, Keypair().pubkey(), 3)  # type: ignore[arg-type]
    text = f"gtx1 cert retire {cert.address} for=Pat"
    retire = message(cert.burn_ix(me, 5_000), memo(text, [me]))
    assert retire_problem(retire, me, str(cert.address)) is None
    assert retire_problem(retire, me, str(grx.address)) == "not this wallet's certificate"
    moved = message(cert.transfer_ix(me, thief, 5_000), memo(text, [me]))
    assert retire_problem(moved, me, str(cert.address)) == (
        "not a burn of the certificate with its memo"
    )
