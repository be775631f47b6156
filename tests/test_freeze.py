"""Freezing and thawing as a 2-of-3 multisig of independent parties (issue #14 item 1), THB
frozen until approved too (item 2), the KYC step (item 3) and the approval rule for a meter's
owner (item 4). On the embedded ledger (LiteSVM, signatures on); the KYC service is a real
HTTP server in this process."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import combinations
from pathlib import Path
from typing import Any, ClassVar

import pytest
from fastapi.testclient import TestClient
from ledger_fixtures import Chain, make_chain
from nacl.signing import SigningKey
from platform_site import ADMIN_H, Clock, Site, hub_batch, hub_signatures, served, signup
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import Transaction

from gridtokenx import auditlog
from gridtokenx.cosigner import Cosigner, CosignRefused, Registry, RemoteCosigner, app
from gridtokenx.kyc import KycCheck
from gridtokenx.ledger import oracle, tokens
from gridtokenx.ledger.backend import LedgerError, memo
from gridtokenx.ledger.deployment import APPROVER, PARTIES, Deployment, freeze_memo
from gridtokenx.ledger.tokens import Mint
from gridtokenx.wire import batch as wire_batch

SIGNED_AT = 1_790_000_000


@pytest.fixture
def chain(tmp_path: Path) -> Chain:
    return make_chain(tmp_path)


def registry_keys(dep: Deployment) -> dict[str, Keypair]:
    """Each party's registry key, from its own keystore (development keystores here)."""
    stores = {"platform": dep.keys, **dep.parties}
    return {p: stores[p].get(f"registry/{p}") for p in PARTIES}


def change(dep: Deployment, action: str, owner: Pubkey, signers: list[Keypair]) -> None:
    """A raw thaw or freeze of both of the owner's accounts under the registry multisig."""
    keys = [k.pubkey() for k in signers]
    ixs = [
        (m.thaw_ix if action == "thaw" else m.freeze_ix)(owner, dep.freeze_multisig, keys)
        for m in (dep.grx, dep.thb)
    ]
    dep.ledger.send(ixs, signers)


def frozen(dep: Deployment, owner: Pubkey) -> tuple[bool, bool]:
    return dep.grx.is_frozen(owner), dep.thb.is_frozen(owner)


def test_one_party_alone_can_neither_freeze_nor_thaw_and_any_two_can(chain: Chain) -> None:
    dep = chain.dep
    assert dep.grx.freeze_authority() == dep.thb.freeze_authority() == dep.freeze_multisig
    assert tokens.read_multisig(dep.ledger.account_data(dep.freeze_multisig)) == (
        2,
        [dep.identities[p].registry for p in PARTIES],
    )
    keys = registry_keys(chain.dep)
    platform_all = [dep.keys.get(n) for n in dep.keys.names()]  # the platform's whole keystore
    owner = Keypair().pubkey()
    dep.open_wallet(owner, approve=False)
    assert frozen(dep, owner) == (True, True)  # GRX and THB: frozen until approved
    for alone in [[keys[p]] for p in PARTIES] + [platform_all]:
        with pytest.raises(LedgerError):
            change(dep, "thaw", owner, alone)
        assert frozen(dep, owner) == (True, True)
    for pair in combinations(PARTIES, 2):
        change(dep, "thaw", owner, [keys[p] for p in pair])
        assert frozen(dep, owner) == (False, False)
        for p in PARTIES:
            with pytest.raises(LedgerError):
                change(dep, "freeze", owner, [keys[p]])
        change(dep, "freeze", owner, [keys[p] for p in pair])
        assert frozen(dep, owner) == (True, True)
    # the site's own accounts were thawed at deployment, before the multisig took over
    for name in ("escrow", "treasury", "grid-operator"):
        assert frozen(dep, dep.keys.get(name).pubkey()) == (False, False)


def reviewing(chain: Chain, role: str = "grid-operator") -> Cosigner:
    dep = chain.dep
    approver = dep.keys.ensure(APPROVER).pubkey()
    return Cosigner(
        role,
        dep.parties[role],
        dep.ledger,
        lambda: dep.grx.address,
        lambda _hub, _meters: Registry({}, {}, {}),
        thb=lambda: dep.thb.address,
        approver=lambda: approver,
        site_accounts=dep.site_accounts,
    )


def asked(
    dep: Deployment,
    cosigner: Cosigner,
    action: str,
    memo_owner: Pubkey,
    ix_owner: Pubkey | None = None,
    mints: list[Mint] | None = None,
    reference: str = "r-1",
) -> tuple[str, Message]:
    """The message the platform would ask a co-signer to sign (its memo, the message)."""
    text = freeze_memo(action, memo_owner, reference, "operator")
    signers = [dep.keys.get("registry/platform").pubkey(), cosigner.registry_pubkey]
    ixs = [
        (m.thaw_ix if action == "thaw" else m.freeze_ix)(
            ix_owner or memo_owner, dep.freeze_multisig, signers
        )
        for m in (mints or [dep.grx, dep.thb])
    ]
    return text, Message.new_with_blockhash(
        [*ixs, memo(text)], dep.ledger.payer.pubkey(), dep.ledger.latest_blockhash()
    )


def code_of(call: Callable[[], Any]) -> str:
    with pytest.raises(CosignRefused) as err:
        call()
    return err.value.code


def test_a_cosigner_thaws_only_against_the_operators_approval_record(chain: Chain) -> None:
    dep = chain.dep
    cosigner = reviewing(chain)
    alice, bob = Keypair().pubkey(), Keypair().pubkey()
    for o in (alice, bob):
        dep.open_wallet(o, approve=False)
    approver = dep.keys.get(APPROVER)
    text, message = asked(dep, cosigner, "thaw", alice)
    forged = dep.keys.get("registry/platform").sign_message(text.encode())  # not the approver
    assert code_of(lambda: cosigner.sign_freeze(message, forged)) == "not_approved"
    other, _ = asked(dep, cosigner, "thaw", bob)  # a real approval, of another account
    given = approver.sign_message(other.encode())
    assert code_of(lambda: cosigner.sign_freeze(message, given)) == "not_approved"
    # the record approves alice, the instructions thaw bob's accounts
    text, wrong = asked(dep, cosigner, "thaw", alice, ix_owner=bob)
    approval = approver.sign_message(text.encode())
    assert code_of(lambda: cosigner.sign_freeze(wrong, approval)) == "wrong_account"
    cert = Mint(dep.ledger, Keypair().pubkey(), 0)  # an account of a mint that is not GRX/THB
    text, wrong = asked(dep, cosigner, "thaw", alice, mints=[cert])
    assert code_of(lambda: cosigner.sign_freeze(wrong, approver.sign_message(text.encode()))) == (
        "wrong_account"
    )
    # a suspension record does not thaw, and a message without its one memo is not a freeze
    text, message = asked(dep, cosigner, "thaw", alice)
    approval = approver.sign_message(text.encode())
    freeze_text = freeze_memo("freeze", alice, "r-1", "operator")
    swapped = Message.new_with_blockhash(
        [
            *(
                m.thaw_ix(alice, dep.freeze_multisig, [k for k in message.account_keys[1:3]])
                for m in (dep.grx, dep.thb)
            ),
            memo(freeze_text),
        ],
        dep.ledger.payer.pubkey(),
        message.recent_blockhash,
    )
    assert code_of(
        lambda: cosigner.sign_freeze(swapped, approver.sign_message(freeze_text.encode()))
    ) == ("not_as_described")
    bare = Message.new_with_blockhash(
        [dep.grx.thaw_ix(alice, dep.freeze_multisig, [])],
        dep.ledger.payer.pubkey(),
        message.recent_blockhash,
    )
    assert code_of(lambda: cosigner.sign_freeze(bare, approval)) == "not_a_freeze"
    assert frozen(dep, alice) == (True, True)  # nothing was signed, nothing changed

    # with the approval the co-signer signs, and its signature with the platform's lands
    signature = cosigner.sign_freeze(message, approval)
    assert signature.verify(cosigner.registry_pubkey, bytes(message))
    platform_key, payer = dep.keys.get("registry/platform"), dep.ledger.payer

    by_key = {
        payer.pubkey(): payer.sign_message(bytes(message)),
        platform_key.pubkey(): platform_key.sign_message(bytes(message)),
        cosigner.registry_pubkey: signature,
    }
    need = message.account_keys[: message.header.num_required_signatures]
    dep.ledger.send_transaction(Transaction.populate(message, [by_key[k] for k in need]))
    assert frozen(dep, alice) == (False, False)
    # a reference on the chain is spent: the same record cannot be used again
    text, again = asked(dep, cosigner, "thaw", alice, mints=[dep.grx])
    assert code_of(lambda: cosigner.sign_freeze(again, approval)) == "stale_approval"
    # one reference, one message, even before it lands (the journal)
    text, first = asked(dep, cosigner, "thaw", bob, reference="r-9")
    bob_ok = approver.sign_message(text.encode())
    cosigner.sign_freeze(first, bob_ok)
    _, other_bytes = asked(dep, cosigner, "thaw", bob, mints=[dep.grx], reference="r-9")
    assert code_of(lambda: cosigner.sign_freeze(other_bytes, bob_ok)) == "already_signed"


def _land(dep: Deployment, message: Message, cosigner: Cosigner, signature: Signature) -> None:
    """The platform's and the payer's signatures beside a co-signer's, sent."""
    platform_key, payer = dep.keys.get("registry/platform"), dep.ledger.payer
    by_key = {
        payer.pubkey(): payer.sign_message(bytes(message)),
        platform_key.pubkey(): platform_key.sign_message(bytes(message)),
        cosigner.registry_pubkey: signature,
    }
    need = message.account_keys[: message.header.num_required_signatures]
    dep.ledger.send_transaction(Transaction.populate(message, [by_key[k] for k in need]))


def test_an_old_approval_cannot_thaw_an_account_suspended_after_it(chain: Chain) -> None:
    """The red team's replay: thaw r-1 through the grid operator, freeze r-2, then the same
    r-1 record sent to the auditor; and a thaw record made before a later suspension, never
    landed, sent after it."""
    from gridtokenx.ledger.deployment import new_reference

    dep = chain.dep
    gop, aud = reviewing(chain, "grid-operator"), reviewing(chain, "auditor")
    approver = dep.keys.get(APPROVER)
    alice = Keypair().pubkey()
    dep.open_wallet(alice, approve=False)
    text, msg = asked(dep, gop, "thaw", alice, reference="r-1")
    approval = approver.sign_message(text.encode())
    _land(dep, msg, gop, gop.sign_freeze(msg, approval))
    ftext, fmsg = asked(dep, gop, "freeze", alice, reference="r-2")
    _land(dep, fmsg, gop, gop.sign_freeze(fmsg, approver.sign_message(ftext.encode())))
    assert frozen(dep, alice) == (True, True)
    text2, msg2 = asked(dep, aud, "thaw", alice, reference="r-1")
    assert text2 == text
    assert code_of(lambda: aud.sign_freeze(msg2, approval)) == "stale_approval"
    assert frozen(dep, alice) == (True, True)
    # times in the references: a thaw decided at t=1000 ms, withheld; a freeze at t=2000
    # lands; the t=1000 thaw is older than that suspension; a thaw at t=3000 is not
    bob = Keypair().pubkey()
    dep.open_wallet(bob, approve=True)
    ftext, fmsg = asked(dep, gop, "freeze", bob, reference=new_reference(2000))
    _land(dep, fmsg, gop, gop.sign_freeze(fmsg, approver.sign_message(ftext.encode())))
    old, old_msg = asked(dep, aud, "thaw", bob, reference=new_reference(1000))
    assert code_of(lambda: aud.sign_freeze(old_msg, approver.sign_message(old.encode()))) == (
        "stale_approval"
    )
    new, new_msg = asked(dep, aud, "thaw", bob, reference=new_reference(3000))
    _land(dep, new_msg, aud, aud.sign_freeze(new_msg, approver.sign_message(new.encode())))
    assert frozen(dep, bob) == (False, False)


def test_the_platform_freezes_and_thaws_through_a_cosigner_over_http(chain: Chain) -> None:
    dep = chain.dep
    cosigner = reviewing(chain, "auditor")
    client = TestClient(app(cosigner))
    r = client.post("/sign/freeze", json={"message": "%%"})
    assert (r.status_code, r.json()["code"]) == (422, "malformed_request")
    owner = Keypair().pubkey()
    dep.open_wallet(owner, approve=False)
    _, message = asked(dep, cosigner, "thaw", owner)
    body = {"message": _b64(bytes(message)), "approval": _b64(bytes(Signature.default()))}
    r = client.post("/sign/freeze", json=body)
    assert (r.status_code, r.json()["code"]) == (422, "not_approved")
    with served(app(cosigner)) as url:
        remote = RemoteCosigner("auditor", url)
        assert remote.registry_pubkey == dep.identities["auditor"].registry
        dep.freeze_cosigner = (remote.registry_pubkey, remote.sign_freeze)
        dep.approve(owner)
        assert frozen(dep, owner) == (False, False)
        dep.suspend(owner)
        assert frozen(dep, owner) == (True, True)
    texts = [t for t in dep.ledger.memo_index() if t.split(" ")[2:3] == [str(owner)]]
    assert sorted(t.split(" ")[1] for t in texts) == ["freeze", "thaw"]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize("path", ["/sign/freeze", "/sign/topup", "/sign/mint"])
@pytest.mark.parametrize("bad", ["program", "account"])
def test_a_message_with_an_index_out_of_range_is_malformed_not_a_500(
    chain: Chain, path: str, bad: str
) -> None:
    """The co-signer's HTTP is unauthenticated: an instruction pointing past the message's
    keys (program or account index) is 422 malformed_request, never an IndexError 500."""
    from solders.hash import Hash
    from solders.instruction import CompiledInstruction
    from spl.token.constants import TOKEN_2022_PROGRAM_ID

    from gridtokenx.ledger.backend import MEMO_PROGRAM_ID

    dep = chain.dep
    client = TestClient(app(reviewing(chain)), raise_server_exceptions=False)
    text = freeze_memo("thaw", Keypair().pubkey(), "x", "operator")
    keys = [dep.ledger.payer.pubkey(), TOKEN_2022_PROGRAM_ID, MEMO_PROGRAM_ID]
    first = (
        CompiledInstruction(7, bytes([11]), bytes([0]))
        if bad == "program"
        else CompiledInstruction(1, bytes([11]), bytes([9, 9, 9]))
    )
    ixs = [first, CompiledInstruction(2, text.encode(), b"")]
    message = bytes(Message.new_with_compiled_instructions(1, 0, 2, keys, Hash.default(), ixs))
    assert not oracle.well_formed(Message.from_bytes(message))
    if path == "/sign/mint":
        header, signature, readings = hub_batch(
            SigningKey.generate(), SigningKey.generate(), "m-1", 1, [0, 5]
        )
        body: dict[str, Any] = {
            "header": _b64(wire_batch.encode_header(header)),
            "hub_signature": _b64(signature),
            "readings": [[_b64(raw), _b64(sig)] for raw, sig in readings],
            "messages": [_b64(message)],
        }
    else:
        body = {"message": _b64(message), "approval": _b64(bytes(64))}
    r = client.post(path, json=body)
    assert (r.status_code, r.json()["code"]) == (422, "malformed_request")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    monkeypatch.delenv("SOLANA_RPC_URL", raising=False)
    s = Site(tmp_path / "platform", None, Clock(), auto_approve=False)
    yield s
    s.close()


def submit(site: Site, hub: SigningKey, meter: SigningKey, epoch: int, exports: list[int]) -> None:
    """A hub's batch of m-1's readings through the co-signer, as the outbox sends it."""
    header, signature, readings = hub_batch(hub, meter, "m-1", epoch, exports)
    encoded = wire_batch.encode_header(header)
    out = site.platform.receive_batch("hub-1", epoch, encoded, signature, readings)
    if out.state == "done":
        return
    evidence = oracle.Evidence(header, signature, tuple(readings))
    site.platform.sign_batch("hub-1", epoch, hub_signatures(hub, out.proposals, evidence))


def test_a_pending_owners_meter_is_registered_but_mints_only_after_approval(site: Site) -> None:
    dep = site.platform.dep
    pat = signup(site.client, "pat@example.org")
    wallet = Pubkey.from_string(pat["wallet"])
    hub, meter = SigningKey.generate(), SigningKey.generate()
    site.platform.register_hub("hub-1", bytes(hub.verify_key), "t" * 30)
    site.platform.register_meter("m-1", bytes(meter.verify_key), wallet)
    assert frozen(dep, wallet) == (True, True)  # registering its meter approved nothing
    submit(site, hub, meter, 1, [0, 2_500])
    assert dep.grx.supply() == 0 and dep.grx.balance(wallet) == 0  # the mint waits
    r = site.client.post(f"/api/v1/admin/users/{pat['user_id']}/approve", headers=ADMIN_H)
    assert r.status_code == 200
    submit(site, hub, meter, 2, [2_500, 6_000])
    assert dep.grx.balance(wallet) == 3_500 == dep.grx.supply()
    # a meter for a wallet with no account here: the operator's registration approves it
    bare = Keypair().pubkey()
    site.platform.register_meter("m-2", bytes(SigningKey.generate().verify_key), bare)
    assert frozen(dep, bare) == (False, False)
    assert any(t.startswith(f"gtx1 thaw {bare} ") for t in dep.ledger.memo_index())
    approvals = [
        e["detail"]
        for e in auditlog.entries(site.platform.books, 50)
        if e["action"] == "admin.wallet_approve"
    ]
    assert approvals == [{"wallet": str(bare), "meter_id": "m-2"}]


class Kyc(BaseHTTPRequestHandler):
    """A KYC service: passes an email that starts with "ok", fails any other."""

    seen: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Kyc.seen.append(body)
        passed = str(body["email"]).startswith("ok")
        out = json.dumps({"passed": passed, "reference": f"kyc-{len(Kyc.seen)}"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: Any) -> None:
        pass


def test_the_kyc_step_approves_a_signup_whose_check_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    server = ThreadingHTTPServer(("127.0.0.1", 0), Kyc)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/check"
    s = Site(tmp_path / "p", None, Clock(), auto_approve=False, kyc_url=url)
    try:
        ok = signup(s.client, "ok@example.org")
        no = signup(s.client, "no@example.org")
        assert (ok["status"], no["status"]) == ("active", "pending")
        dep = s.platform.dep
        assert frozen(dep, Pubkey.from_string(ok["wallet"])) == (False, False)
        assert frozen(dep, Pubkey.from_string(no["wallet"])) == (True, True)
        assert [b["email"] for b in Kyc.seen] == ["ok@example.org", "no@example.org"]
        assert Kyc.seen[0] == {
            "user_id": ok["user_id"],
            "email": "ok@example.org",
            "wallet": ok["wallet"],
        }
        entries = {
            (e["action"], e["detail"].get("user_id")): e
            for e in auditlog.entries(s.platform.books, 20)
        }
        assert entries[("kyc.passed", ok["user_id"])]["detail"]["reference"] == "kyc-1"
        assert ("kyc.user_approve", ok["user_id"]) in entries
        assert entries[("kyc.pending", no["user_id"])]["detail"]["reason"] == "kyc_failed"
        assert any(t.endswith(" kyc") and ok["wallet"] in t for t in dep.ledger.memo_index())
        order = {"side": "buy", "quantity_wh": 1000, "price": 4_000_000}
        r = s.client.post("/api/v1/orders", headers=no["auth"], json=order)
        assert (r.status_code, r.json()["code"]) == (403, "not_approved")
        # an operator still approves the one the KYC step did not pass
        r = s.client.post(f"/api/v1/admin/users/{no['user_id']}/approve", headers=ADMIN_H)
        assert r.json()["status"] == "active"
        assert frozen(dep, Pubkey.from_string(no["wallet"])) == (False, False)
        # the KYC check passes but the co-signer refuses the thaw (here: it knows another
        # approval key): the sign-up stays pending, with the co-signer's reason audited
        stranger = Keypair().pubkey()
        refusing = Cosigner(
            "grid-operator",
            dep.parties["grid-operator"],
            dep.ledger,
            lambda: dep.grx.address,
            lambda _hub, _meters: Registry({}, {}, {}),
            thb=lambda: dep.thb.address,
            approver=lambda: stranger,
        )
        dep.freeze_cosigner = (refusing.registry_pubkey, refusing.sign_freeze)
        late = signup(s.client, "ok-late@example.org")
        assert late["status"] == "pending"
        assert frozen(dep, Pubkey.from_string(late["wallet"])) == (True, True)
        pending = [
            e["detail"]
            for e in auditlog.entries(s.platform.books, 40)
            if e["action"] == "kyc.pending" and e["detail"]["user_id"] == late["user_id"]
        ]
        assert [d["reason"] for d in pending] == ["not_approved"]
        down = KycCheck("http://127.0.0.1:9/check", timeout_s=2).check("u", "ok@x.org", "w")
        assert (down.passed, down.reason) == (False, "kyc_unavailable")
    finally:
        s.close()
        server.shutdown()
        server.server_close()


def _actions(site: Site, user_id: str) -> list[tuple[str, str]]:
    """(action, reason) of the audit entries about one user, oldest first."""
    return [
        (e["action"], str(e["detail"].get("reason", "")))
        for e in reversed(auditlog.entries(site.platform.books, 100))
        if e["detail"].get("user_id") == user_id
    ]


def test_a_suspension_stands_at_once_when_the_cosigner_is_down_and_freezes_later(
    site: Site,
) -> None:
    """Suspended first (logins revoked, orders refused), the chain freeze after: a co-signer
    that is down (faked: a process outside this one) leaves the freeze pending, and the next
    epoch pass freezes the account once the co-signer answers."""
    from platform_site import EPOCH_S

    from gridtokenx.errors import Unavailable

    dep = site.platform.dep
    u = signup(site.client, "a@example.org")
    wallet = Pubkey.from_string(u["wallet"])
    r = site.client.post(f"/api/v1/admin/users/{u['user_id']}/approve", headers=ADMIN_H)
    assert r.json()["status"] == "active"
    working = dep.freeze_cosigner

    def down(message: Message, approval: Signature) -> Signature:
        raise Unavailable("cosigner_unavailable", "grid-operator: connection refused")

    assert working is not None
    dep.freeze_cosigner = (working[0], down)
    r = site.client.post(f"/api/v1/admin/users/{u['user_id']}/suspend", headers=ADMIN_H)
    assert (r.status_code, r.json()["status"]) == (200, "suspended")
    me = site.client.get("/api/v1/me", headers=u["auth"])
    assert (me.status_code, me.json()["code"]) == (403, "suspended")
    order = {"side": "buy", "quantity_wh": 1000, "price": 4_000_000}
    o = site.client.post("/api/v1/orders", headers=u["auth"], json=order)
    assert (o.status_code, o.json()["code"]) == (403, "suspended")
    with pytest.raises(Exception) as err:
        site.trading.place(u["user_id"], "buy", 1000, 4_000_000)
    assert getattr(err.value, "code", None) == "suspended"
    assert frozen(dep, wallet) == (False, False)  # the chain step waits for a co-signer
    assert _actions(site, u["user_id"])[-2:] == [
        ("admin.user_suspend", ""),
        ("admin.user_freeze_pending", "cosigner_unavailable"),
    ]
    site.trading.clock.now += EPOCH_S  # type: ignore[attr-defined]
    site.trading.tick()  # still down: still pending, not audited again
    assert frozen(dep, wallet) == (False, False)
    assert [a for a, _ in _actions(site, u["user_id"])].count("admin.user_freeze_pending") == 1
    dep.freeze_cosigner = working
    site.trading.clock.now += EPOCH_S  # type: ignore[attr-defined]
    site.trading.tick()
    assert frozen(dep, wallet) == (True, True)
    assert _actions(site, u["user_id"])[-1] == ("admin.user_freeze", "")
    texts = [t for t in dep.ledger.memo_index() if t.startswith(f"gtx1 freeze {wallet} ")]
    assert len(texts) == 1


def test_a_suspended_user_with_a_resting_order_never_stalls_settlement(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from platform_site import EPOCH_S, fund

    from gridtokenx import audit

    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    monkeypatch.delenv("SOLANA_RPC_URL", raising=False)
    clock = Clock()
    s = Site(tmp_path / "p", None, clock, auto_approve=True)
    try:
        c, dep = s.client, s.platform.dep
        seller, buyer = signup(c, "s@example.org"), signup(c, "b@example.org")
        other = signup(c, "o@example.org")
        assert _actions(s, seller["user_id"]) == [("auto.user_approve", "")]
        fund(s, seller, grx=5_000)
        fund(s, other, grx=5_000)
        fund(s, buyer, thb=100_000_000)
        sell = {"side": "sell", "quantity_wh": 1000, "price": 3_000_000}
        buy = {"side": "buy", "quantity_wh": 1000, "price": 2_000_000}  # does not cross
        sold = c.post("/api/v1/orders", headers=seller["auth"], json=sell).json()
        bought = c.post("/api/v1/orders", headers=buyer["auth"], json=buy).json()
        seller_w, buyer_w = (Pubkey.from_string(u["wallet"]) for u in (seller, buyer))
        assert dep.grx.balance(seller_w) == 4_000  # 1000 Wh in escrow
        r = c.post(f"/api/v1/admin/users/{seller['user_id']}/suspend", headers=ADMIN_H)
        assert r.json()["status"] == "suspended"
        assert frozen(dep, seller_w) == (True, True)
        assert s.trading.order_row(sold["order_id"])["status"] == "cancelled"  # type: ignore[index]
        assert dep.grx.balance(seller_w) == 5_000  # refunded before the freeze
        # one suspended and already frozen whose order is still in the book at the close
        # (placed on another instance as the suspension's cancels ran, say): the close
        # cancels it, and its refund waits in the escrow for the thaw
        rest = c.post("/api/v1/orders", headers=other["auth"], json=sell).json()
        other_w = Pubkey.from_string(other["wallet"])
        s.accounts.set_status(other["user_id"], "suspended")
        dep.suspend(other_w)
        epoch = bought["epoch"]
        clock.now += EPOCH_S
        assert s.trading.tick() == [epoch]  # the epoch clears
        assert s.trading.order_row(rest["order_id"])["status"] == "cancelled"  # type: ignore[index]
        assert dep.grx.balance(other_w) == 4_000 and frozen(dep, other_w) == (True, True)
        r = c.post(f"/api/v1/admin/users/{other['user_id']}/approve", headers=ADMIN_H)
        assert r.json()["status"] == "active"
        assert dep.grx.balance(other_w) == 5_000  # the held refund, paid at the thaw
        r = c.get(f"/api/v1/market/epochs/{epoch}", headers=buyer["auth"])
        assert r.status_code == 200
        assert s.trading.order_row(bought["order_id"])["status"] != "open"  # type: ignore[index]
        assert dep.thb.balance(buyer_w) == 100_000_000  # its escrow back
        report = audit.run(dep, s.platform.books)
        # the only failures: `fund` mints the sellers' GRX directly, with no meter's batch
        assert len(report.failures) == 2 and all("GRX minted" in f for f in report.failures)
        assert (report.checked["settlements"], report.checked["escrow"]) == (1, 2)
    finally:
        s.close()


class BadKyc(BaseHTTPRequestHandler):
    """A KYC service answering badly, by the e-mail's first word: malformed JSON, a
    non-bool `passed`, HTTP 500, a redirect, a trickle slower than the deadline, too long."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        kind = str(body["email"]).split("@")[0]
        status, out = 200, b'{"passed": true, "reference": "k"}'
        if kind == "json":
            out = b'{"passed": tru'
        elif kind == "nonbool":
            out = b'{"passed": "yes"}'
        elif kind == "e500":
            status = 500
        elif kind == "e302":
            status = 302
        elif kind == "big":
            out = b'{"passed": true, "reference": "' + b"x" * 20_000 + b'"}'
        self.send_response(status)
        if kind == "e302":
            self.send_header("Location", "http://127.0.0.1:9/passed")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if kind == "slow":  # a byte every 0.4 s: each read is quick, the whole is not
            for i in range(len(out)):
                self.wfile.write(out[i : i + 1])
                self.wfile.flush()
                time.sleep(0.4)
            return
        self.wfile.write(out)

    def log_message(self, *args: Any) -> None:
        pass


def test_bad_kyc_answers_leave_the_signup_pending_with_the_reason_audited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient as Client

    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    server = ThreadingHTTPServer(("127.0.0.1", 0), BadKyc)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/check"
    s = Site(tmp_path / "p", None, Clock(), auto_approve=False, kyc_url=url)
    try:
        api = s.app.state.api
        api.kyc = KycCheck(url, timeout_s=1.0)
        dep = s.platform.dep
        expected = {
            "json": ("kyc_malformed", ""),
            "nonbool": ("kyc_malformed", ""),
            "e500": ("kyc_unavailable", "HTTP 500"),
            "e302": ("kyc_unavailable", "HTTP 302"),
            "slow": ("kyc_unavailable", "no answer in time"),
            "big": ("kyc_malformed", "answer too long"),
        }
        for kind, (reason, reference) in expected.items():
            u = signup(s.client, f"{kind}@example.org")
            assert u["status"] == "pending", kind
            assert frozen(dep, Pubkey.from_string(u["wallet"])) == (True, True)
            pending = [
                (e["detail"]["reason"], e["detail"]["reference"])
                for e in auditlog.entries(s.platform.books, 50)
                if e["action"] == "kyc.pending" and e["detail"]["user_id"] == u["user_id"]
            ]
            assert pending == [(reason, reference)], kind
        # the check passes but no co-signer for freezes is configured: pending, coded, no 500
        dep.freeze_cosigner, dep.parties = None, {}
        client = Client(s.app, raise_server_exceptions=False)
        u = signup(client, "ok@example.org")
        assert u["status"] == "pending"
        reasons = [
            e["detail"]["reason"]
            for e in auditlog.entries(s.platform.books, 50)
            if e["action"] == "kyc.pending" and e["detail"]["user_id"] == u["user_id"]
        ]
        assert reasons == ["cosigner_unavailable"]
        r = client.post(f"/api/v1/admin/users/{u['user_id']}/approve", headers=ADMIN_H)
        assert (r.status_code, r.json()["code"]) == (503, "cosigner_unavailable")
        me = client.get("/api/v1/me", headers=u["auth"])
        assert me.json()["status"] == "pending"
    finally:
        s.close()
        server.shutdown()
        server.server_close()


def test_no_cosigner_freezes_the_sites_own_accounts(chain: Chain, tmp_path: Path) -> None:
    """Escrow, treasury and the grid operator's wallet: a freeze of any of them would stop
    the market for everyone, so a co-signer refuses it whatever record comes with it."""
    dep = chain.dep
    cosigner = reviewing(chain)
    approver = dep.keys.get(APPROVER)
    for name in ("escrow", "treasury", "grid-operator"):
        owner = dep.keys.get(name).pubkey()
        text, message = asked(dep, cosigner, "freeze", owner, reference=f"site-{name}")
        record = approver.sign_message(text.encode())
        with pytest.raises(CosignRefused) as err:
            cosigner.sign_freeze(message, record)
        assert err.value.code == "site_account"
        assert frozen(dep, owner) == (False, False)
    # the co-signer process reads them from deployment.json, as it reads the approval key
    dep.save(tmp_path / "deployment.json")
    doc = json.loads((tmp_path / "deployment.json").read_text())
    assert doc["site_accounts"] == [
        str(dep.keys.get(n).pubkey()) for n in ("escrow", "treasury", "grid-operator")
    ]


def test_the_demo_grant_is_minted_after_the_status_and_a_refused_one_leaves_the_approval(
    site: Site,
) -> None:
    from gridtokenx.cosigner import CosignRefused as Refused

    dep, api = site.platform.dep, site.app.state.api
    api.demo_grant = 7_000_000
    u = signup(site.client, "g@example.org")
    wallet = Pubkey.from_string(u["wallet"])
    assert dep.thb.balance(wallet) == 0  # pending: nothing minted
    r = site.client.post(f"/api/v1/admin/users/{u['user_id']}/approve", headers=ADMIN_H)
    assert r.json()["status"] == "active"
    assert dep.thb.balance(wallet) == 7_000_000
    # the bank co-signer refuses the next grant (faked: it is another process): the approval
    # stands, the books say active, and the refusal is audited
    assert dep.thb_cosigner is not None
    key = dep.thb_cosigner[0]

    def refuses(message: Message) -> Signature:
        raise Refused("not_as_described", "no")

    dep.thb_cosigner = (key, refuses)
    v = signup(site.client, "h@example.org")
    r = site.client.post(f"/api/v1/admin/users/{v['user_id']}/approve", headers=ADMIN_H)
    assert (r.status_code, r.json()["status"]) == (200, "active")
    assert frozen(dep, Pubkey.from_string(v["wallet"])) == (False, False)
    assert dep.thb.balance(Pubkey.from_string(v["wallet"])) == 0
    assert _actions(site, v["user_id"])[-2:] == [
        ("admin.user_approve", ""),
        ("demo.grant_failed", "not_as_described"),
    ]


def test_the_approver_key_can_live_in_the_operators_own_keystore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GTX_OPERATOR_KEYSTORE: the approval records are signed from the operator's own
    keystore file (its own sealing key); the platform's keystore has no `approver`."""
    import stat

    from gridtokenx.ledger.keystore import Keystore

    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    operator_secret = os.urandom(32)
    path = tmp_path / "operator" / "keystore.json"
    path.parent.mkdir(mode=0o700)
    monkeypatch.setenv("GTX_OPERATOR_KEYSTORE", str(path))
    monkeypatch.setenv("GTX_OPERATOR_KEYSTORE_KEY", operator_secret.hex())
    s = Site(tmp_path / "p", None, Clock(), auto_approve=False)
    try:
        dep = s.platform.dep
        u = signup(s.client, "op@example.org")
        r = s.client.post(f"/api/v1/admin/users/{u['user_id']}/approve", headers=ADMIN_H)
        assert r.json()["status"] == "active"
        assert frozen(dep, Pubkey.from_string(u["wallet"])) == (False, False)
        assert APPROVER not in dep.keys.names()
        operator = Keystore(path, operator_secret).get(APPROVER).pubkey()
        doc = json.loads((tmp_path / "p" / "deployment.json").read_text())
        assert doc["approver"] == str(operator)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        # a record signed by the platform's keystore is no longer the operator's
        cosigner = Cosigner(
            "grid-operator",
            dep.parties["grid-operator"],
            dep.ledger,
            lambda: dep.grx.address,
            lambda _hub, _meters: Registry({}, {}, {}),
            thb=lambda: dep.thb.address,
            approver=lambda: operator,
        )
        owner = Keypair().pubkey()
        dep.open_wallet(owner, approve=False)
        text, message = asked(dep, cosigner, "thaw", owner)
        forged = dep.keys.ensure("not-the-operator").sign_message(text.encode())
        assert code_of(lambda: cosigner.sign_freeze(message, forged)) == "not_approved"
    finally:
        s.close()
