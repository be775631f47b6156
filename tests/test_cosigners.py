"""No single party can mint, pause or rotate: the authorities are 2-of-3 multisigs whose keys
sit in different parties' keystores, every co-signer re-reviews what it signs, and the
authorities are read back from the chain. On the embedded ledger (LiteSVM, signatures on)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from ledger_fixtures import Chain, evidence, make_chain, reading, signed
from nacl.signing import SigningKey
from services import free_port, gridtokenx, wait_port
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from spl.token.models import AuthorityType

from gridtokenx import cosigner
from gridtokenx.cosigner import Cosigner, CosignRefused, Registry
from gridtokenx.ledger import authorities, oracle, tokens
from gridtokenx.ledger.backend import LedgerError, memo
from gridtokenx.ledger.deployment import COSIGNERS, PARTIES
from gridtokenx.ledger.embedded import ChainReader
from gridtokenx.ledger.keystore import Keystore, KeystoreError


@pytest.fixture
def chain(tmp_path: Path) -> Chain:
    return make_chain(tmp_path)


def party_keys(chain: Chain) -> dict[str, list[Keypair]]:
    """Every key each party holds: the whole of its keystore (the hub: its own key)."""
    stores: dict[str, Keystore] = {"platform": chain.keys, **chain.dep.parties}
    out = {party: [store.get(n) for n in store.names()] for party, store in stores.items()}
    out["hub"] = [chain.hub]
    return out


def refused(chain: Chain, ixs: list[Any], signers: list[Keypair]) -> str:
    with pytest.raises(LedgerError) as err:
        chain.dep.ledger.send(ixs, signers)
    return err.value.code


def test_no_single_party_can_mint_pause_or_rotate_and_two_parties_can(chain: Chain) -> None:
    dep = chain.dep
    alice = Keypair()
    dep.open_wallet(alice.pubkey())
    grx = dep.grx
    new_authority = Keypair().pubkey()

    def mint(keys: list[Keypair]) -> list[Any]:
        return [grx.mint_ix(alice.pubkey(), 1_000, dep.oracle_multisig, [k.pubkey() for k in keys])]

    def pause(keys: list[Keypair]) -> list[Any]:
        return [tokens.pause(grx.address, dep.governance_multisig, [k.pubkey() for k in keys])]

    def rotate_mint(keys: list[Keypair]) -> list[Any]:
        return [
            grx.set_authority_ix(
                AuthorityType.MINT_TOKENS,
                dep.oracle_multisig,
                new_authority,
                [k.pubkey() for k in keys],
            )
        ]

    def mint_thb(keys: list[Keypair]) -> list[Any]:
        assert dep.thb_multisig is not None
        return [
            dep.thb.mint_ix(alice.pubkey(), 10**6, dep.thb_multisig, [k.pubkey() for k in keys])
        ]

    def rotate_pause(keys: list[Keypair]) -> list[Any]:
        return [
            tokens.set_pause_authority(
                grx.address, dep.governance_multisig, new_authority, [k.pubkey() for k in keys]
            )
        ]

    keys = party_keys(chain)
    assert set(keys) == {"platform", "grid-operator", "auditor", "hub"}
    for party, held in keys.items():  # everything one party holds, together
        for action in (mint, mint_thb, pause, rotate_mint, rotate_pause):
            assert refused(chain, action(held), held) == "missing_required_signature", party
    assert grx.supply() == 0 == dep.thb.supply() and not grx.is_paused()
    assert grx.mint_authority() == dep.oracle_multisig
    assert grx.pause_authority() == dep.governance_multisig
    # the threshold: any two independent parties
    platform, operator, auditor = (dep.oracle(f"oracle/{p}") for p in PARTIES)
    dep.ledger.send(mint([platform, operator]), [platform, operator])
    dep.ledger.send(mint([operator, auditor]), [operator, auditor])
    assert grx.balance(alice.pubkey()) == 2_000 == grx.supply()
    banks = [dep.oracle(f"bank/{p}") for p in ("platform", "auditor")]
    dep.ledger.send(mint_thb(banks), banks)
    assert dep.thb.balance(alice.pubkey()) == 10**6
    gov_platform, gov_operator, gov_auditor = dep.governance()
    dep.pause([gov_operator, gov_auditor])
    assert grx.is_paused()
    assert (
        refused(chain, mint([platform, auditor]), [platform, auditor]) == "mint_paused"
    )  # paused: not even the oracles mint
    dep.resume([gov_platform, gov_auditor])
    dep.rotate_oracles([k.pubkey() for k in (platform, operator, auditor)], 2, [platform, auditor])
    assert grx.mint_authority() == dep.oracle_multisig
    dep.ledger.send(
        [*rotate_pause([gov_platform, gov_operator]), memo("gtx1 governance rotate pause")],
        [gov_platform, gov_operator],
    )
    assert grx.pause_authority() == new_authority


def test_no_keystore_holds_a_threshold_and_authorities_come_from_the_chain(chain: Chain) -> None:
    dep = chain.dep
    found = authorities.of_site(chain.path, dep.ledger)["authorities"]
    assert [(a["name"], a["threshold"]) for a in found] == [
        ("GRX mint", 2),
        ("GRX freeze", 2),
        ("GRX pause", 2),
        ("THB mint", 2),
        ("THB freeze", 2),
    ]
    by_name = {a["name"]: a for a in found}
    assert by_name["GRX mint"]["signers"] == [
        {"pubkey": str(dep.identities[p].oracle), "holder": p} for p in PARTIES
    ]
    assert by_name["GRX pause"]["signers"] == [
        {"pubkey": str(dep.identities[p].governance), "holder": p} for p in PARTIES
    ]
    freezers = [{"pubkey": str(dep.identities[p].registry), "holder": p} for p in PARTIES]
    assert by_name["GRX freeze"]["signers"] == freezers == by_name["THB freeze"]["signers"]
    assert by_name["GRX freeze"]["address"] == str(dep.freeze_multisig)
    assert by_name["THB freeze"]["address"] == str(dep.freeze_multisig)
    assert by_name["THB mint"]["signers"] == [
        {"pubkey": str(dep.identities[p].bank), "holder": p} for p in PARTIES
    ]
    # no keystore file holds as many signers of any multisig authority as its threshold
    files = [chain.path / "keys.json", *(chain.path / "cosigners" / f"{p}.json" for p in COSIGNERS)]
    for a in found:
        if a["threshold"] > 1:
            for path in files:
                held = set(authorities.public_keys(path).values())
                assert sum(s["pubkey"] in held for s in a["signers"]) < a["threshold"]
    # read from the chain, not from configuration: a rotation shows at once
    gov = dep.governance()
    successor = tokens.create_multisig(dep.ledger, [k.pubkey() for k in gov], 3)
    dep.rotate_pause_authority(successor, gov[:2])
    again = {a["name"]: a for a in authorities.of_site(chain.path, dep.ledger)["authorities"]}
    assert again["GRX pause"]["address"] == str(successor)
    assert again["GRX pause"]["threshold"] == 3


def test_ledger_authorities_command_reads_the_chain_of_another_process(chain: Chain) -> None:
    done = gridtokenx("ledger", "authorities", "--data", str(chain.path), "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc == authorities.of_site(chain.path, chain.dep.ledger)
    assert [s["holder"] for s in doc["authorities"][0]["signers"]] == list(PARTIES)
    missing = gridtokenx("ledger", "authorities", "--data", str(chain.path / "nowhere"))
    assert missing.returncode == 2 and "deployment.json is missing" in missing.stderr


def test_chain_reader_follows_the_writer_and_waits_for_a_torn_tail(chain: Chain) -> None:
    dep = chain.dep
    alice = Keypair()
    dep.open_wallet(alice.pubkey())
    reader = ChainReader(chain.path / "chain")
    grx_account = dep.grx.account_of(alice.pubkey())
    assert reader.account_data(grx_account) == dep.ledger.account_data(grx_account)
    two = [dep.oracle("oracle/platform"), dep.oracle("oracle/grid-operator")]
    dep.ledger.send(
        [
            dep.grx.mint_ix(alice.pubkey(), 42, dep.oracle_multisig, [k.pubkey() for k in two]),
            memo("gtx1 test follow"),
        ],
        two,
    )
    assert "gtx1 test follow" in reader.memo_index()
    assert reader.account_data(grx_account) == dep.ledger.account_data(grx_account)
    assert len(reader.history()) == len(dep.ledger.history())
    with open(chain.path / "chain" / "chain.log", "ab") as f:
        f.write(b"\x40\x00\x00\x00half")  # a record still being written
    assert len(reader.history()) == len(dep.ledger.history())


# -- the co-signer's own review ----------------------------------------------------------------
def fleet(chain: Chain, n: int) -> tuple[dict[str, SigningKey], dict[str, Pubkey]]:
    signing, owners = {}, {}
    for k in range(n):
        meter = f"m-{k}"
        signing[meter] = SigningKey.generate()
        owner = Keypair()
        chain.dep.open_wallet(owner.pubkey())
        owners[meter] = owner.pubkey()
    return signing, owners


def grid_operator(chain: Chain, signing: dict[str, SigningKey], owners: dict[str, Pubkey]) -> Any:
    registry = Registry(
        {m: bytes(k.verify_key) for m, k in signing.items()},
        owners,
        {"hub-1": bytes(chain.hub_signing.verify_key)},
    )
    grx = chain.dep.grx.address
    return Cosigner(
        "grid-operator",
        chain.dep.parties["grid-operator"],
        chain.ledger,
        lambda: grx,
        lambda _hub, _meters: registry,
        clock=lambda: 1_790_100_000,
    )


def proposals(chain: Chain, ev: oracle.Evidence, owners: dict[str, Pubkey]) -> list[Message]:
    dep = chain.dep
    found = oracle.propose(
        dep.ledger,
        dep.grx,
        dep.oracle_multisig,
        [dep.oracle("oracle/platform").pubkey(), dep.oracle("oracle/grid-operator").pubkey()],
        chain.hub.pubkey(),
        ev,
        owners,
        oracle.Marks(oracle.MINT),
    )
    return [p.message for p in found]


def code_of(co: Cosigner, ev: oracle.Evidence, messages: list[Message]) -> str:
    with pytest.raises(CosignRefused) as err:
        co.sign_mint(ev, messages)
    return err.value.code


def test_a_cosigner_refuses_a_forged_reading_and_anything_but_the_planned_mints(
    chain: Chain,
) -> None:
    dep = chain.dep
    signing, owners = fleet(chain, 3)
    good = [signed(signing[m], reading(m, s, 10 * s, 400 * s)) for m in signing for s in (1, 2)]
    co = grid_operator(chain, signing, owners)
    ev = evidence(chain, 1, good)
    mints = proposals(chain, ev, owners)[1:]  # after the batch record the hub signs alone
    # one forged reading among six: the header is the hub's, the signature is not the meter's
    forged_raw, _ = good[3]
    forged = [*good[:3], (forged_raw, signed(SigningKey.generate(), reading("m-1", 2, 0, 0))[1])]
    forged += good[4:]
    assert code_of(co, evidence(chain, 1, forged), mints) == "bad_signature"
    # the hub's rules again: a reading dated before the previous one
    backdated = [
        signed(signing["m-0"], reading("m-0", 1, 0, 100)),
        signed(signing["m-0"], reading("m-0", 2, 0, 200, ts=1_780_000_000)),
    ]
    assert code_of(co, evidence(chain, 1, backdated), []) == "backdated"
    # a message that mints one Wh more than the plan
    inflated = oracle.mint_instructions(
        dep.grx,
        dep.oracle_multisig,
        [dep.oracle("oracle/platform").pubkey(), co.oracle_pubkey],
        chain.hub.pubkey(),
        ev.tag,
        ev.header.root,
        [
            oracle.MeterMint(m.meter_id, m.owner, m.from_wh, m.to_wh + (k == 0))
            for k, m in enumerate(oracle.plan(ev.header, owners, {}))
        ],
    )
    payer = dep.ledger.payer.pubkey()
    blockhash = dep.ledger.latest_blockhash()
    message = Message.new_with_blockhash(inflated, payer, blockhash)
    assert code_of(co, ev, [message]) == "plan_mismatch"
    # the planned mints without the hub's consent on the memo
    unconsented = oracle.mint_instructions(
        dep.grx,
        dep.oracle_multisig,
        [dep.oracle("oracle/platform").pubkey(), co.oracle_pubkey],
        None,
        ev.tag,
        ev.header.root,
        oracle.plan(ev.header, owners, {}),
    )
    assert (
        code_of(co, ev, [Message.new_with_blockhash(unconsented, payer, blockhash)])
        == "no_hub_consent"
    )
    assert dep.grx.supply() == 0
    # the real thing: signed, and the same bytes asked again get the same signature
    signatures = co.sign_mint(ev, mints)
    assert co.sign_mint(ev, mints) == signatures
    # the same ranges in another message (a new blockhash) are never signed twice
    chain.ledger.svm.expire_blockhash()
    assert code_of(co, ev, proposals(chain, ev, owners)[1:]) == "already_signed"
    restarted = grid_operator(chain, signing, owners)  # the journal is on disk
    assert code_of(restarted, ev, proposals(chain, ev, owners)[1:]) == "already_signed"
    assert oct((chain.path / "cosigners" / "grid-operator.journal").stat().st_mode)[-3:] == "600"


def test_a_batch_minted_with_the_cosigner_and_the_hub_consent(chain: Chain) -> None:
    dep = chain.dep
    signing, owners = fleet(chain, 2)
    co = grid_operator(chain, signing, owners)
    ev = evidence(
        chain, 1, [signed(signing[m], reading(m, s, 0, 300 * s)) for m in signing for s in (1, 2)]
    )
    found = oracle.propose(
        dep.ledger,
        dep.grx,
        dep.oracle_multisig,
        [dep.oracle("oracle/platform").pubkey(), co.oracle_pubkey],
        chain.hub.pubkey(),
        ev,
        owners,
        oracle.Marks(oracle.MINT),
    )
    mints = [p.message for p in found[1:]]
    given = dict(zip(map(bytes, mints), co.sign_mint(ev, mints), strict=True))
    platform = dep.oracle("oracle/platform")
    for p in found:
        signers: dict[Pubkey, oracle.Signer] = {
            chain.hub.pubkey(): chain.hub.sign_message,
            platform.pubkey(): platform.sign_message,
        }
        if bytes(p.message) in given:
            signers[co.oracle_pubkey] = lambda _m, s=given[bytes(p.message)]: s
        oracle.submit(dep.ledger, p, signers)
    assert [dep.grx.balance(o) for o in owners.values()] == [300, 300]
    assert code_of(co, ev, mints) == "already_minted"


def test_a_cosigner_signs_only_the_top_up_its_memo_names_once(chain: Chain) -> None:
    dep = chain.dep
    alice = Keypair()
    dep.open_wallet(alice.pubkey())
    co = grid_operator(chain, {}, {})
    thb = dep.thb.address
    co._thb = lambda: thb
    dep.thb_cosigner = (co.bank_pubkey, co.sign_topup)
    dep.top_up(alice.pubkey(), 2_500_000, "bank-ref-1")  # the platform's key and its review
    assert dep.thb.balance(alice.pubkey()) == 2_500_000
    assert dep.top_up(alice.pubkey(), 2_500_000, "bank-ref-1")  # the same reference: once
    assert dep.thb.balance(alice.pubkey()) == 2_500_000
    assert dep.thb_multisig is not None
    platform = dep.oracle("bank/platform").pubkey()
    payer, blockhash = dep.ledger.payer.pubkey(), dep.ledger.latest_blockhash()

    def message(amount: int, text: str) -> Message:
        ixs = [
            dep.thb.mint_ix(alice.pubkey(), amount, dep.thb_multisig, [platform, co.bank_pubkey]),
            memo(text),
        ]
        return Message.new_with_blockhash(ixs, payer, blockhash)

    more = message(9_000_000, f"gtx1 onramp bank-ref-2 {alice.pubkey()} 1000000")
    assert refused_topup(co, more) == "not_as_described"
    assert refused_topup(co, message(1, "gtx1 settle 1 x 1/1")) == "not_a_topup"
    landed = message(2_500_000, f"gtx1 onramp bank-ref-1 {alice.pubkey()} 2500000")
    assert refused_topup(co, landed) == "already_minted"
    fresh = f"gtx1 onramp bank-ref-3 {alice.pubkey()} 1000000"
    co.sign_topup(message(1_000_000, fresh))
    chain.ledger.svm.expire_blockhash()
    blockhash = dep.ledger.latest_blockhash()
    assert refused_topup(co, message(1_000_000, fresh)) == "already_signed"
    assert dep.thb.balance(alice.pubkey()) == 2_500_000


def refused_topup(co: Cosigner, message: Message) -> str:
    with pytest.raises(CosignRefused) as err:
        co.sign_topup(message)
    return err.value.code


# -- co-signers in their own processes ---------------------------------------------------------
@pytest.fixture
def processes(tmp_path: Path) -> Iterator[dict[str, Any]]:
    data = tmp_path / "platform"
    data.mkdir()
    started, urls = [], {}
    for role in COSIGNERS:
        port = free_port()
        env = {**os.environ, "GTX_KEYSTORE_KEY": os.urandom(32).hex()}  # its own secret
        log = open(tmp_path / f"{role}.log", "wb")  # noqa: SIM115 (closed below)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gridtokenx",
                "cosigner",
                "run",
                "--role",
                role,
                "--keystore",
                str(tmp_path / role / "keys.json"),
                "--data",
                str(data),
                "--port",
                str(port),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started.append((proc, log))
        urls[role] = f"http://127.0.0.1:{port}"
        wait_port(port, timeout=60)
    try:
        yield {"data": data, "urls": urls, "root": tmp_path, "started": started}
    finally:
        for proc, log in started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
            log.close()


def test_cosigners_in_their_own_processes_sign_the_platforms_mints(
    processes: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from gridtokenx.services.site import Platform

    data, urls, root = processes["data"], processes["urls"], processes["root"]
    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    monkeypatch.setenv(cosigner.COSIGNERS_ENV, ",".join(f"{r}={u}" for r, u in urls.items()))
    platform = Platform(data)
    dep = platform.dep
    assert dep.parties == {} and not (data / "cosigners").exists()  # nothing hosted here
    for role in COSIGNERS:  # the platform holds no co-signer key; the chain lists them
        ident = httpx.get(urls[role] + "/identity").json()
        assert dep.identities[role].oracle == Pubkey.from_string(ident["oracle"])
        store = json.loads((root / role / "keys.json").read_text())
        assert ident["oracle"] in {e["public"] for e in store["keys"].values()}
    hub, meter, owner = SigningKey.generate(), SigningKey.generate(), Keypair()
    platform.register_hub("hub-1", bytes(hub.verify_key), "t" * 30)
    platform.register_meter("m-1", bytes(meter.verify_key), owner.pubkey())
    readings = [signed(meter, reading("m-1", s, 0, 700 * s)) for s in (1, 2, 3)]
    from gridtokenx.wire import batch as wire_batch

    header = wire_batch.build("hub-1", 1, [r for r, _ in readings])
    order = dict(readings)
    readings = [(raw, order[raw]) for _, raw in wire_batch.order_leaves(list(order))]
    hub_sig = bytes(hub.sign(wire_batch.BATCH_DOMAIN + wire_batch.encode_header(header)).signature)
    out = platform.receive_batch(
        "hub-1", 1, wire_batch.encode_header(header), hub_sig, list(readings)
    )
    key = Keypair.from_seed(bytes(hub))
    ev = oracle.Evidence(header, hub_sig, tuple(readings))
    sigs = []
    for p in out.proposals:
        oracle.hub_check(p.message, ev)
        sigs.append(bytes(key.sign_message(bytes(p.message))))
    done = platform.sign_batch("hub-1", 1, sigs)
    assert done.state == "done" and dep.grx.balance(owner.pubkey()) == 1_400
    # the meter's registration thawed the owner through a co-signer's process, which read the
    # operator's approval key from deployment.json and checked the record; without it: refused
    thaw = [t for t in dep.ledger.memo_index() if t.startswith(f"gtx1 thaw {owner.pubkey()} ")]
    assert len(thaw) == 1 and thaw[0].endswith(" operator")
    other = Keypair().pubkey()
    dep.open_wallet(other, approve=False)
    remote, forger = cosigner.RemoteCosigner("grid-operator", urls["grid-operator"]), Keypair()
    dep.freeze_cosigner = (  # the platform sends a record not signed by the approval key
        remote.registry_pubkey,
        lambda message, _approval: remote.sign_freeze(message, forger.sign_message(b"x")),
    )
    with pytest.raises(CosignRefused) as refusal:
        dep.approve(other)
    assert refusal.value.code == "not_approved" and dep.grx.is_frozen(other)
    dep.top_up(owner.pubkey(), 3_000_000, "deposit-1")  # co-signed by the grid operator's process
    assert dep.thb.balance(owner.pubkey()) == 3_000_000
    # the grid operator's process refuses a batch with one forged reading, with its reason
    forged = [*readings[:2], (readings[2][0], bytes(64))]
    body = cosigner.encode_request(oracle.Evidence(header, hub_sig, tuple(forged)), [])
    r = httpx.post(urls["grid-operator"] + "/sign/mint", json=body)
    assert (r.status_code, r.json()["code"]) == (422, "bad_signature")
    r = httpx.post(urls["grid-operator"] + "/sign/mint", json={"header": "%%"})
    assert (r.status_code, r.json()["code"]) == (422, "malformed_request")
    authorities_doc = authorities.of_site(data, ChainReader(data / "chain"))
    assert [s["holder"] for s in authorities_doc["authorities"][0]["signers"]] == list(PARTIES)
    # a site deployed with other co-signers (here: development ones) is not silently reused
    monkeypatch.delenv(cosigner.COSIGNERS_ENV)
    Platform(root / "other").books.dispose()
    monkeypatch.setenv(cosigner.COSIGNERS_ENV, ",".join(f"{r}={u}" for r, u in urls.items()))
    with pytest.raises(KeystoreError) as err:
        Platform(root / "other")
    assert err.value.code == "cosigner_mismatch"


def test_audit_flags_a_mint_its_hub_did_not_sign(chain: Chain, tmp_path: Path) -> None:
    from gridtokenx import audit
    from gridtokenx.adapters import books
    from gridtokenx.wire import batch as wire_batch

    dep = chain.dep
    engine = books.connect(f"sqlite:///{tmp_path / 'books.db'}")
    signing, owners = fleet(chain, 1)
    books.add_rows(
        engine,
        books.meters,
        [
            {
                "meter_id": "m-0",
                "public_key": bytes(signing["m-0"].verify_key),
                "owner": str(owners["m-0"]),
            }
        ],
    )
    two = [dep.oracle("oracle/platform"), dep.oracle("oracle/grid-operator")]
    for epoch, with_hub in ((1, True), (2, False)):
        readings = [
            signed(signing["m-0"], reading("m-0", s, 0, 100 * s))
            for s in (2 * epoch - 1, 2 * epoch)
        ]
        ev = evidence(chain, epoch, readings)
        books.add_rows(
            engine,
            books.batches,
            [
                {
                    "hub_id": "hub-1",
                    "epoch": epoch,
                    "root": ev.header.root,
                    "header": wire_batch.encode_header(ev.header),
                    "hub_signature": ev.hub_signature,
                    "hub_key": bytes(chain.hub_signing.verify_key),
                }
            ],
        )
        books.add_rows(
            engine,
            books.batch_readings,
            [
                {"hub_id": "hub-1", "epoch": epoch, "idx": k, "raw": raw, "signature": sig}
                for k, (raw, sig) in enumerate(ev.readings)
            ],
        )
        keys = [*two, chain.hub] if with_hub else two  # without the hub: no memo signature
        signers = {k.pubkey(): oracle.reviewing_signer(k, lambda: None) for k in keys}
        oracle.mint_batch(
            dep.ledger, dep.grx, dep.oracle_multisig, ev, owners, oracle.Marks(oracle.MINT), signers
        )
        report = audit.run(dep, engine)
        if with_hub:
            assert report.ok and report.checked["mints"] == 1, report.failures
    assert dep.grx.balance(owners["m-0"]) == 300  # the chain let the second mint through
    assert len(report.failures) == 1 and "without the consent of hub hub-1" in report.failures[0]


def test_a_cosigner_on_a_taken_port_fails_and_never_says_ready(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [
                *(sys.executable, "-m", "gridtokenx", "cosigner", "run", "--role", "auditor"),
                *("--keystore", str(tmp_path / "auditor" / "keys.json")),
                *("--data", str(tmp_path), "--port", str(port)),
            ],
            env={**os.environ, "GTX_KEYSTORE_KEY": os.urandom(32).hex()},
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 3  # uvicorn's STARTUP_FAILURE
    assert "ready" not in done.stdout
    assert "address already in use" in done.stderr


def test_a_cosigner_stops_cleanly_on_sigterm(processes: dict[str, Any]) -> None:
    """SIGTERM: it stops serving and says so (exit 0), not ended by uvicorn's re-raise."""
    for proc, _log in processes["started"]:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    for role in COSIGNERS:
        said = (processes["root"] / f"{role}.log").read_text()
        assert said.count(" ready\n") == 1 and said.endswith(f"cosigner {role} stopped\n"), said
