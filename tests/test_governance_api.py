"""Governance through the running platform (issue #14 item 3): propose, sign and execute from
the admin API and the operator page, with another party signing from its own keystore by
the command line; the chain refuses a proposal short of its threshold; the market applies
the fee the governance threshold signed, and an admin cannot change the fee alone."""

from __future__ import annotations

import base64
import json

import pytest
from platform_site import ADMIN_H, Site
from services import gridtokenx
from solders.keypair import Keypair

from gridtokenx import auditlog
from gridtokenx.governance import Proposal, message_of
from gridtokenx.keynames import user_key
from gridtokenx.ledger.keystore import Keystore


@pytest.fixture
def site(sqlite_site: Site) -> Site:
    return sqlite_site


def party_key(site: Site, party: str) -> Keypair:
    """A co-signing party's governance key, from its own (development) keystore."""
    folder = site.platform.data / "cosigners"
    secret = bytes.fromhex((folder / f"{party}.key").read_text().strip())
    return Keystore(folder / f"{party}.json", secret).get(f"governance/{party}")


def test_a_pause_proposed_and_executed_by_the_api_signed_by_cli_and_api(site: Site) -> None:
    c, data = site.client, site.platform.data
    r = c.post(
        "/api/v1/admin/governance",
        headers=ADMIN_H,
        json={"kind": "pause", "signers": ["platform", "grid-operator"]},
    )
    assert r.status_code == 201, r.text
    proposal = r.json()
    assert (proposal["id"], proposal["status"], len(proposal["missing"])) == (1, "open", 2)
    r = c.post("/api/v1/admin/governance/1/sign", headers=ADMIN_H)
    assert r.status_code == 200 and len(r.json()["missing"]) == 1
    # one party (the platform) alone: the chain refuses, nothing changes
    r = c.post("/api/v1/admin/governance/1/execute", headers=ADMIN_H)
    assert (r.status_code, r.json()["code"]) == (422, "signature_failure")
    assert site.platform.dep.grx.is_paused() is False
    # a signature of another key is refused and not kept
    intruder = Keypair()
    forged = base64.b64encode(bytes(intruder.sign_message(b"x"))).decode()
    grid_key = party_key(site, "grid-operator")
    r = c.post(
        "/api/v1/admin/governance/1/signatures",
        headers=ADMIN_H,
        json={"signer": str(grid_key.pubkey()), "signature": forged},
    )
    assert (r.status_code, r.json()["code"]) == (422, "bad_signature")
    # the grid operator signs with its own keystore, from the command line
    secret = (data / "cosigners" / "grid-operator.key").read_text().strip()
    signed = gridtokenx(
        "governance",
        "sign",
        "1",
        "--role",
        "grid-operator",
        "--keystore",
        str(data / "cosigners" / "grid-operator.json"),
        "--data",
        str(data),
        env={"GTX_KEYSTORE_KEY": secret},
    )
    assert signed.returncode == 0, signed.stderr
    assert json.loads(signed.stdout)["missing"] == []
    r = c.post("/api/v1/admin/governance/1/execute", headers=ADMIN_H)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "executed"
    assert site.platform.dep.grx.is_paused() is True
    listed = c.get("/api/v1/admin/governance", headers=ADMIN_H).json()["proposals"]
    assert [(p["id"], p["kind"], p["status"]) for p in listed] == [(1, "pause", "executed")]
    actions = [e["action"] for e in auditlog.entries(site.platform.books, 10)]
    # the platform's own steps are audited; the grid operator signed in its own process
    assert [a for a in actions if a.startswith("governance.")] == [
        "governance.pause",
        "governance.sign",
        "governance.propose",
    ]
    r = c.post("/api/v1/admin/governance/1/execute", headers=ADMIN_H)
    assert (r.status_code, r.json()["code"]) == (409, "not_open")
    r = c.post("/api/v1/admin/governance/99/sign", headers=ADMIN_H)
    assert (r.status_code, r.json()["code"]) == (404, "unknown_proposal")


def operator_session(site: Site) -> None:
    wallet = site.platform.keys.ensure(user_key("op")).pubkey()
    site.accounts.register("op@example.org", "correct horse 1", "admin", wallet, user_id="op")
    r = site.client.post("/login", data={"email": "op@example.org", "password": "correct horse 1"})
    assert r.status_code == 200


def test_the_fee_by_proposal_on_the_operator_page_and_the_market_applies_it(site: Site) -> None:
    c = site.client
    assert site.trading.config.fee_bps != 75
    r = c.put("/api/v1/admin/market/parameters", headers=ADMIN_H, json={"fee_bps": 75})
    assert (r.status_code, r.json()["code"]) == (409, "fee_by_governance")
    operator_session(site)
    r = c.post("/admin/governance", data={"kind": "fee", "args": "bps=75", "signers": "x"})
    assert r.url.path == "/admin" and r.url.params["error"].startswith("bad_signers:")
    r = c.post(
        "/admin/governance", data={"kind": "fee", "args": "bps=75", "signers": "platform,auditor"}
    )
    assert r.url.params["notice"] == "Proposal 1 (fee) made: it needs its signers' signatures."
    page = c.get("/admin").text
    assert 'action="/admin/governance/1/sign"' in page and "platform, auditor" in page
    r = c.post("/admin/governance/1/sign")
    assert r.url.params["notice"] == "Proposal 1 signed with the platform's key."
    r = c.post("/admin/governance/1/execute")  # one party: the threshold says no
    assert r.url.params["error"].startswith("signature_failure:")
    assert site.trading.config.fee_bps != 75
    proposal = site.client.get("/api/v1/admin/governance", headers=ADMIN_H).json()["proposals"][0]
    auditor = party_key(site, "auditor")
    message = bytes(message_of(Proposal(**{k: proposal[k] for k in Proposal.__annotations__})))
    signature = base64.b64encode(bytes(auditor.sign_message(message))).decode()
    r = c.post(
        "/admin/governance/1/signatures",
        data={"signer": str(auditor.pubkey()), "signature": signature},
    )
    assert r.url.params["notice"] == "Signature added to proposal 1."
    r = c.post("/admin/governance/1/execute")
    assert r.url.params["notice"].startswith("Proposal 1 executed: ")
    assert site.trading.config.fee_bps == 75
    assert site.trading.parameters()["fee_bps"] == 75
    assert "executed" in c.get("/admin").text
