"""Certificates through the API: issued for verified export (never the same Wh twice),
validated by governance, transferred, retired; illegal moves are clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from nacl.signing import SigningKey
from platform_site import ADMIN, Clock, admin_h, signup, submit
from solders.pubkey import Pubkey

from gridtokenx.accounts import Accounts
from gridtokenx.api.app import create_app
from gridtokenx.market.config import MarketConfig
from gridtokenx.services.site import Platform
from gridtokenx.services.trading import Trading


def test_certificates_for_verified_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    platform = Platform(tmp_path)
    client = TestClient(
        create_app(
            platform,
            ADMIN,
            Trading(platform, MarketConfig(), 900.0, Clock()),
            Accounts(platform.books, b"k" * 32),
            auto_approve=True,
        )
    )
    alice, bob = signup(client, "alice@x.org"), signup(client, "bob@x.org")
    hub, meter = SigningKey.generate(), SigningKey.generate()
    platform.register_hub("hub-1", bytes(hub.verify_key), "t" * 30)
    platform.register_meter("m-1", bytes(meter.verify_key), Pubkey.from_string(alice["wallet"]))
    submit(platform, hub, meter, 1, [0, 4_000, 9_000])
    assert platform.dep.grx.balance(Pubkey.from_string(alice["wallet"])) == 9_000
    r = client.post(
        "/api/v1/admin/certificates",
        headers=admin_h(),
        json={"meter_id": "m-1", "period": "2026-11"},
    )
    assert r.status_code == 201, r.text
    cert = r.json()
    assert (cert["wh"], cert["status"], cert["holder"]) == (9_000, "pending", alice["wallet"])
    again = client.post(
        "/api/v1/admin/certificates",
        headers=admin_h(),
        json={"meter_id": "m-1", "period": "2026-11"},
    )
    assert (again.status_code, again.json()["code"]) == (
        409,
        "nothing_to_certify",
    )  # the same Wh: never twice
    mine = client.get("/api/v1/certificates", headers=alice["auth"]).json()
    assert [c["mint"] for c in mine] == [cert["mint"]]
    early = client.post(
        f"/api/v1/certificates/{cert['mint']}/retire",
        headers=alice["auth"],
        json={"beneficiary": "Alice"},
    )
    assert (early.status_code, early.json()["code"]) == (409, "illegal_transition")
    assert (
        client.post(
            f"/api/v1/admin/certificates/{cert['mint']}/validate", headers=admin_h()
        ).json()["status"]
        == "active"
    )
    moved = client.post(
        f"/api/v1/certificates/{cert['mint']}/transfer",
        headers=alice["auth"],
        json={"to_wallet": bob["wallet"]},
    )
    assert moved.json()["holder"] == bob["wallet"]
    theft = client.post(
        f"/api/v1/certificates/{cert['mint']}/retire",
        headers=alice["auth"],
        json={"beneficiary": "Alice"},
    )
    assert theft.json()["code"] == "not_holder"
    done = client.post(
        f"/api/v1/certificates/{cert['mint']}/retire",
        headers=bob["auth"],
        json={"beneficiary": "Bob's bakery"},
    )
    assert done.json()["status"] == "retired"
    # more export later: the next certificate starts where the last ended
    submit(platform, hub, meter, 2, [12_000])
    nxt = client.post(
        "/api/v1/admin/certificates",
        headers=admin_h(),
        json={"meter_id": "m-1", "period": "2026-12"},
    ).json()
    assert (nxt["from_wh"], nxt["to_wh"]) == (9_000, 12_000)
    revoked = client.post(
        f"/api/v1/admin/certificates/{nxt['mint']}/revoke",
        headers=admin_h(),
        json={"reason": "meter audit"},
    )
    assert revoked.json()["status"] == "revoked"
    assert (
        client.post(
            "/api/v1/certificates/nonsense/retire", headers=bob["auth"], json={"beneficiary": "x"}
        ).status_code
        == 422
    )


def test_consumption_burns_grx_against_the_import_register(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    platform = Platform(tmp_path)
    client = TestClient(
        create_app(platform, ADMIN, None, Accounts(platform.books, b"k" * 32), auto_approve=True)
    )
    alice = signup(client, "alice@x.org")
    hub, meter = SigningKey.generate(), SigningKey.generate()
    platform.register_hub("hub-1", bytes(hub.verify_key), "t" * 30)
    platform.register_meter("m-1", bytes(meter.verify_key), Pubkey.from_string(alice["wallet"]))
    wallet = Pubkey.from_string(alice["wallet"])
    submit(platform, hub, meter, 1, [0, 5_000], imports=[100, 100])  # sunny: exports
    assert platform.dep.grx.balance(wallet) == 5_000
    submit(platform, hub, meter, 2, [5_000, 5_000], imports=[100, 1_300])  # evening: imports
    assert platform.dep.grx.balance(wallet) == 3_800 == platform.dep.grx.supply()
    submit(platform, hub, meter, 2, [5_000, 5_000], imports=[100, 1_300])  # a retry: once
    assert platform.dep.grx.supply() == 3_800
    from gridtokenx import audit

    assert audit.run(platform.dep, platform.books).ok


def test_operators_suspend_hubs_and_meters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    platform = Platform(tmp_path)
    client = TestClient(
        create_app(platform, ADMIN, None, Accounts(platform.books, b"k" * 32), auto_approve=True)
    )
    alice = signup(client, "alice@x.org")
    hub, meter = SigningKey.generate(), SigningKey.generate()
    platform.register_hub("hub-1", bytes(hub.verify_key), "t" * 30)
    platform.register_meter("m-1", bytes(meter.verify_key), Pubkey.from_string(alice["wallet"]))
    r = client.post("/api/v1/admin/meters/m-1/suspend", headers=admin_h())
    assert r.json() == {"id": "m-1", "status": "suspended"}
    submit(platform, hub, meter, 1, [0, 5_000])
    assert platform.dep.grx.supply() == 0  # a suspended meter mints nothing
    assert (
        client.post("/api/v1/admin/meters/m-9/suspend", headers=admin_h()).json()["code"]
        == "unknown_meter"
    )
    assert client.post("/api/v1/admin/meters/m-1/explode", headers=admin_h()).status_code == 404
    client.post("/api/v1/admin/meters/m-1/approve", headers=admin_h())
    client.post("/api/v1/admin/hubs/hub-1/suspend", headers=admin_h())
    batch = client.post(
        "/api/v1/hub/batches",
        headers={"Authorization": "Bearer " + "t" * 30},
        json={"epoch": 2, "header": "00", "hub_signature": "00" * 64, "readings": []},
    )
    assert (batch.status_code, batch.json()["code"]) == (403, "hub_suspended")


def test_the_certificates_page_lists_and_retires(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    platform = Platform(tmp_path)
    client = TestClient(
        create_app(
            platform,
            ADMIN,
            Trading(platform, MarketConfig(), 900.0, Clock()),
            Accounts(platform.books, b"k" * 32),
            auto_approve=True,
        )
    )
    alice = signup(client, "alice@x.org")
    hub, meter = SigningKey.generate(), SigningKey.generate()
    platform.register_hub("hub-1", bytes(hub.verify_key), "t" * 30)
    platform.register_meter("m-1", bytes(meter.verify_key), Pubkey.from_string(alice["wallet"]))
    submit(platform, hub, meter, 1, [0, 2_500])
    cert = client.post(
        "/api/v1/admin/certificates", headers=admin_h(), json={"meter_id": "m-1", "period": "p1"}
    ).json()
    client.post(f"/api/v1/admin/certificates/{cert['mint']}/validate", headers=admin_h())
    client.post("/login", data={"email": "alice@x.org", "password": "correct horse 1"})
    page = client.get("/certificates").text
    assert cert["mint"][:12] in page and "2.500" in page and "active" in page
    done = client.post(
        f"/certificates/{cert['mint']}/retire", data={"beneficiary": "Alice's school"}
    )
    assert "retired" in done.text
