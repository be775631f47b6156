"""The ledger on a real SVM (LiteSVM in-process, signature verification on): every guarantee
below is enforced by the standard Token-2022 program or read back from the chain."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st_
from ledger_fixtures import Chain, evidence, make_chain, reading, signed
from nacl.signing import SigningKey
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.transaction import Transaction

from gridtokenx.ledger import settlement as st
from gridtokenx.ledger import tokens
from gridtokenx.ledger.backend import LedgerError, Packing, fits, note, public_key
from gridtokenx.ledger.certificates import CertificateError, Registry
from gridtokenx.ledger.deployment import Deployment
from gridtokenx.ledger.embedded import EmbeddedLedger
from gridtokenx.ledger.keystore import Keystore, KeystoreError
from gridtokenx.ledger.oracle import (
    MINT,
    Marks,
    Refused,
    mint_batch,
    plan,
    review,
    reviewing_signer,
)


@pytest.fixture
def chain(tmp_path: Path) -> Chain:
    return make_chain(tmp_path)


def oracles(chain: Chain, signers: int = 3) -> dict[Any, Any]:
    keys = [
        chain.hub,
        chain.dep.oracle("oracle/platform"),
        chain.dep.oracle("oracle/grid-operator"),
    ]
    return {k.pubkey(): reviewing_signer(k, lambda: None) for k in keys[:signers]}


def test_under_signed_mint_fails_on_chain_and_frozen_accounts_cannot_trade(chain: Chain) -> None:
    dep = chain.dep
    alice, bob = Keypair(), Keypair()
    dep.open_wallet(alice.pubkey())
    dep.open_wallet(bob.pubkey(), approve=False)
    two = [chain.hub, dep.oracle("oracle/platform")]
    with pytest.raises(LedgerError):  # one co-signer and a hub: the multisig needs 2 of 3
        dep.ledger.send(
            [
                dep.grx.mint_ix(
                    alice.pubkey(), 1_500, dep.oracle_multisig, [k.pubkey() for k in two]
                )
            ],
            two,
        )
    three = [*two, dep.oracle("oracle/standby")]
    dep.ledger.send(
        [dep.grx.mint_ix(alice.pubkey(), 1_500, dep.oracle_multisig, [k.pubkey() for k in three])],
        three,
    )
    assert dep.grx.balance(alice.pubkey()) == 1_500 == dep.grx.supply()
    with pytest.raises(LedgerError) as err:  # bob is not approved: frozen by default
        dep.ledger.send([dep.grx.transfer_ix(alice.pubkey(), bob.pubkey(), 100)], [alice])
    assert err.value.code == "account_frozen"
    dep.approve(bob.pubkey())
    dep.ledger.send([dep.grx.transfer_ix(alice.pubkey(), bob.pubkey(), 100)], [alice])
    dep.suspend(alice.pubkey())  # suspending a user freezes its account
    with pytest.raises(LedgerError) as err:
        dep.ledger.send([dep.grx.transfer_ix(alice.pubkey(), bob.pubkey(), 1)], [alice])
    assert err.value.code == "account_frozen"
    assert (dep.grx.balance(alice.pubkey()), dep.grx.balance(bob.pubkey())) == (1_400, 100)


def test_extension_instructions_are_the_documented_bytes() -> None:
    mint, auth = Keypair().pubkey(), Keypair().pubkey()
    assert bytes(tokens.default_account_state_frozen(mint).data) == bytes([28, 0, 2])
    assert bytes(tokens.metadata_pointer(mint, auth, mint).data) == bytes([39, 0]) + bytes(
        auth
    ) + bytes(mint)
    assert bytes(tokens.pausable(mint, auth).data) == bytes([44, 0]) + bytes(auth)
    assert bytes(tokens.pause(mint, auth).data) == bytes([44, 1])
    assert bytes(tokens.resume(mint, auth).data) == bytes([44, 2])
    meta = tokens.token_metadata_initialize(mint, auth, auth, "GridTokenX Energy", "GRX", "u")
    # sha256("spl_token_metadata_interface:initialize_account")[:8], then borsh strings
    assert bytes(meta.data)[:8].hex() == "d2e11ea258b84d8d"
    assert (
        bytes(meta.data)[8:]
        == b"\x11\x00\x00\x00GridTokenX Energy\x03\x00\x00\x00GRX\x01\x00\x00\x00u"
    )
    assert [a.is_signer for a in meta.accounts] == [False, False, False, True]


def meter_fleet(
    chain: Chain, n: int
) -> tuple[dict[str, bytes], dict[str, Any], dict[str, SigningKey]]:
    keys, owners, signing = {}, {}, {}
    for k in range(n):
        meter = f"m-{k:04d}"
        signing[meter] = SigningKey.generate()
        keys[meter] = bytes(signing[meter].verify_key)
        owner = Keypair()
        chain.dep.open_wallet(owner.pubkey())
        owners[meter] = owner.pubkey()
    return keys, owners, signing


def test_batches_mint_verified_export_once_whatever_crashes(chain: Chain) -> None:
    dep = chain.dep
    keys, owners, signing = meter_fleet(chain, 30)
    ev1 = evidence(
        chain,
        1,
        [signed(signing[m], reading(m, s, 100 * s, 250 * s)) for m in keys for s in (1, 2, 3)],
    )
    marks = Marks("gtx1 mint")
    review(ev1, keys, bytes(chain.hub_signing.verify_key), owners, {}, plan(ev1.header, owners, {}))
    mint_batch(dep.ledger, dep.grx, dep.oracle_multisig, ev1, owners, marks, oracles(chain))
    assert dep.grx.supply() == 30 * 500  # export 250 -> 750 per meter
    # the next epoch, with a crash right after the chain accepted the first transaction
    ev2 = evidence(
        chain,
        2,
        [signed(signing[m], reading(m, s, 100 * s, 250 * s)) for m in keys for s in (4, 5)],
    )
    real = dep.ledger.send_transaction
    calls = []

    def crash_after_landing(tx: Transaction) -> str:
        signature = real(tx)
        calls.append(signature)
        raise RuntimeError("power cut between sending and recording")

    dep.ledger.send_transaction = crash_after_landing  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        mint_batch(dep.ledger, dep.grx, dep.oracle_multisig, ev2, owners, marks, oracles(chain))
    dep.ledger.send_transaction = real  # type: ignore[method-assign]
    assert len(calls) == 1
    # a restart: fresh marks read from the chain; and a second retry for good measure
    for _ in range(2):
        mint_batch(
            dep.ledger,
            dep.grx,
            dep.oracle_multisig,
            ev2,
            owners,
            Marks("gtx1 mint"),
            oracles(chain),
        )
        mint_batch(
            dep.ledger,
            dep.grx,
            dep.oracle_multisig,
            ev1,
            owners,
            Marks("gtx1 mint"),
            oracles(chain),
        )
    assert dep.grx.supply() == 30 * 1_000  # 250 -> 1250: each Wh exactly once
    assert all(dep.grx.balance(o) == 1_000 for o in owners.values())


def test_oracles_refuse_what_does_not_verify(chain: Chain) -> None:
    keys, owners, signing = meter_fleet(chain, 2)
    good = [signed(signing[m], reading(m, s, 0, 500 * s)) for m in keys for s in (1, 2)]
    ev = evidence(chain, 1, good)
    hub_key = bytes(chain.hub_signing.verify_key)
    forged = signed(SigningKey.generate(), reading("m-0000", 3, 0, 90_000))
    tampered = evidence(chain, 1, [*good, forged])
    with pytest.raises(Refused) as err:
        review(tampered, keys, hub_key, owners, {}, plan(tampered.header, owners, {}))
    assert err.value.code == "bad_signature"
    inflated = [(m.meter_id, m.owner, m.from_wh, m.to_wh + 1) for m in plan(ev.header, owners, {})]
    from gridtokenx.ledger.oracle import MeterMint

    with pytest.raises(Refused) as err:
        review(ev, keys, hub_key, owners, {}, [MeterMint(*m) for m in inflated])
    assert err.value.code == "plan_mismatch"
    with pytest.raises(Refused) as err:
        review(
            ev,
            keys,
            bytes(SigningKey.generate().verify_key),
            owners,
            {},
            plan(ev.header, owners, {}),
        )
    assert err.value.code == "bad_hub_signature"
    # an oracle that refuses stops the mint: nothing lands
    dep = chain.dep
    signers = oracles(chain)
    platform = dep.oracle("oracle/platform")

    def refuse() -> None:
        raise Refused("bad_signature", "m-0000/3")

    signers[platform.pubkey()] = reviewing_signer(platform, refuse)
    with pytest.raises(Refused):
        mint_batch(
            dep.ledger, dep.grx, dep.oracle_multisig, ev, owners, Marks("gtx1 mint"), signers
        )
    assert dep.grx.supply() == 0


def test_chain_state_survives_a_restart_and_a_torn_log(chain: Chain) -> None:
    dep = chain.dep
    alice = Keypair()
    dep.open_wallet(alice.pubkey())
    dep.top_up(alice.pubkey(), 5_000_000, "deposit-1")
    assert dep.top_up(alice.pubkey(), 5_000_000, "deposit-1")  # same reference: once
    chain.ledger.close()
    log = chain.path / "chain" / "chain.log"
    with open(log, "ab") as f:
        f.write(b"\x40\x00\x00\x00torn")  # a crash in the middle of an append
    ledger = EmbeddedLedger(chain.path / "chain", chain.keys.get("payer"))
    again = Deployment.load(ledger, chain.keys, chain.path / "deployment.json")
    assert again.thb.balance(alice.pubkey()) == 5_000_000
    assert not again.grx.is_frozen(alice.pubkey())
    assert log.stat().st_size < os.path.getsize(log) + 1 and not log.read_bytes().endswith(b"torn")
    again.top_up(alice.pubkey(), 1, "deposit-2")  # and it keeps going
    assert again.thb.balance(alice.pubkey()) == 5_000_001


def test_settlement_nets_conserves_and_resumes_without_paying_twice(chain: Chain) -> None:
    dep = chain.dep
    users = [Keypair() for _ in range(40)]
    for u in users:
        dep.open_wallet(u.pubkey())
    dep.top_up(dep.escrow.pubkey(), 10**12, "escrow-float")
    import random

    rnd = random.Random(7)
    trades = []
    for k in range(400):
        b, s = rnd.sample(users, 2)
        value = rnd.randint(1, 10**6)
        fee, wheel = value // 100, rnd.randint(0, 1000)
        trades.append(
            st.Trade(str(k), b.pubkey(), s.pubkey(), 0, value + wheel, value - fee, fee, wheel)
        )
    parts = st.pack(dep, st.net(dep, trades, []), 9, st.settlement_root(trades, []))
    assert len(parts) > 2 and all(len(p) >= 15 for p in parts[:-1])  # dense packing
    real, sent = dep.ledger.send, []

    def crash_on_third(ixs: Any, signers: Any) -> str:
        if len(sent) == 2:
            raise RuntimeError("crash mid-epoch")
        sent.append(real(ixs, signers))
        return sent[-1]

    dep.ledger.send = crash_on_third  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        st.settle_epoch(dep, 9, trades)
    dep.ledger.send = real  # type: ignore[method-assign]
    signatures = st.settle_epoch(dep, 9, trades)
    assert signatures[:2] == sent and len(signatures) == len(parts)
    assert st.settle_epoch(dep, 9, trades) == signatures  # and again: nothing more
    received = {u.pubkey(): 0 for u in users}
    for t in trades:
        received[t.seller] += t.seller_net
    assert all(dep.thb.balance(u) == received[u] for u in received)
    assert dep.thb.balance(dep.treasury.pubkey()) == sum(t.fee for t in trades)
    assert dep.thb.balance(dep.grid_operator.pubkey()) == sum(t.wheeling for t in trades)
    assert dep.thb.balance(dep.escrow.pubkey()) == 10**12 - sum(t.buyer_paid for t in trades)


def test_certificates_lifecycle_and_no_double_certificate(chain: Chain) -> None:
    dep = chain.dep
    registry = Registry(dep, dep.oracle("oracle/platform"), dep.governance()[0])
    with pytest.raises(CertificateError):
        Registry(dep, dep.oracle("oracle/platform"), dep.oracle("oracle/platform"))
    alice, bob = Keypair(), Keypair()
    cert = registry.issue("m-1", alice.pubkey(), "2026-11-21", 0, 12_000)
    assert cert.status == "pending" and registry.balance(cert.mint, alice.pubkey()) == 12_000
    with pytest.raises(CertificateError) as err:
        registry.issue("m-1", alice.pubkey(), "2026-11-21", 11_000, 20_000)
    assert err.value.code == "already_certified"
    with pytest.raises(CertificateError) as err:
        registry.retire(cert.mint, alice, "Alice")
    assert err.value.code == "illegal_transition"
    with pytest.raises(LedgerError):  # pending tokens are frozen on-chain too
        dep.ledger.send([tokens.Mint(dep.ledger, cert.mint, 3).open_ix(bob.pubkey())], [])
        dep.ledger.send(
            [tokens.Mint(dep.ledger, cert.mint, 3).transfer_ix(alice.pubkey(), bob.pubkey(), 1)],
            [alice],
        )
    assert registry.validate(cert.mint).status == "active"
    moved = registry.transfer(cert.mint, alice, bob.pubkey())
    assert moved.holder == bob.pubkey() and registry.balance(cert.mint, bob.pubkey()) == 12_000
    retired = registry.retire(cert.mint, bob, "Bob's bakery, 2026")
    assert retired.status == "retired" and registry.balance(cert.mint, bob.pubkey()) == 0
    with pytest.raises(CertificateError):
        registry.revoke(cert.mint, "too late")
    second = registry.issue("m-1", alice.pubkey(), "2026-11-22", 12_000, 15_000)
    registry.validate(second.mint)
    revoked = registry.revoke(second.mint, "meter tampering")
    assert revoked.status == "revoked"
    with pytest.raises(LedgerError) as lerr:  # its tokens can no longer move
        dep.ledger.send(
            [tokens.Mint(dep.ledger, second.mint, 3).transfer_ix(alice.pubkey(), bob.pubkey(), 1)],
            [alice],
        )
    assert lerr.value.code == "account_frozen"
    # the mark is read from the chain: a new registry (a restart) refuses the same Wh
    again = Registry(dep, dep.oracle("oracle/platform"), dep.governance()[0])
    with pytest.raises(CertificateError):
        again.issue("m-1", alice.pubkey(), "x", 14_999, 16_000)


def test_governance_pause_and_rotation(chain: Chain) -> None:
    dep = chain.dep
    alice, bob = Keypair(), Keypair()
    dep.open_wallet(alice.pubkey())
    dep.open_wallet(bob.pubkey())
    signers = [dep.oracle("oracle/platform"), dep.oracle("oracle/auditor")]
    dep.ledger.send(
        [dep.grx.mint_ix(alice.pubkey(), 10, dep.oracle_multisig, [k.pubkey() for k in signers])],
        signers,
    )
    gov = dep.governance()  # platform, grid operator, auditor (development keystores)
    assert len(gov) == 3
    with pytest.raises(LedgerError):
        dep.pause(gov[:1])  # 1 of 3 is not enough
    dep.pause(gov[1:])
    assert dep.grx.is_paused()
    with pytest.raises(LedgerError) as err:
        dep.ledger.send([dep.grx.transfer_ix(alice.pubkey(), bob.pubkey(), 1)], [alice])
    assert err.value.code == "mint_paused"
    dep.resume(gov[:2])
    assert not dep.grx.is_paused()
    dep.ledger.send([dep.grx.transfer_ix(alice.pubkey(), bob.pubkey(), 1)], [alice])
    new = [Keypair() for _ in range(3)]
    dep.rotate_oracles([k.pubkey() for k in new], 2, signers)
    with pytest.raises(LedgerError):  # the old oracles can no longer mint
        dep.ledger.send(
            [
                dep.grx.mint_ix(
                    alice.pubkey(),
                    1,
                    dep.grx.mint_authority() or dep.oracle_multisig,
                    [k.pubkey() for k in signers],
                )
            ],
            signers,
        )
    assert dep.grx.mint_authority() == dep.oracle_multisig
    dep.ledger.send(
        [dep.grx.mint_ix(alice.pubkey(), 1, dep.oracle_multisig, [k.pubkey() for k in new[:2]])],
        new[:2],
    )
    old = dep.freeze_multisig
    freezers = [dep.parties[p].get(f"registry/{p}") for p in ("grid-operator", "auditor")]
    with pytest.raises(LedgerError):  # one registry key alone cannot hand the authority on
        dep.rotate_freeze_authority(Keypair().pubkey(), freezers[:1])
    successor = tokens.create_multisig(dep.ledger, [k.pubkey() for k in freezers], 2)
    dep.rotate_freeze_authority(successor, freezers)
    assert dep.grx.freeze_authority() == dep.thb.freeze_authority() == successor != old
    dep.ledger.send(
        [
            dep.grx.freeze_ix(bob.pubkey(), successor, [k.pubkey() for k in freezers]),
            dep.thb.freeze_ix(bob.pubkey(), successor, [k.pubkey() for k in freezers]),
        ],
        freezers,
    )
    assert dep.grx.is_frozen(bob.pubkey()) and dep.thb.is_frozen(bob.pubkey())


def test_keystore_is_sealed_0600_and_refuses_a_wrong_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    store = Keystore(path, "correct horse battery staple")
    key = store.ensure("escrow")
    text = path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert bytes(key)[:32].hex() not in text and str(key.pubkey()) in text
    assert Keystore(path, "correct horse battery staple").get("escrow") == key
    with pytest.raises(KeystoreError) as err:
        Keystore(path, "wrong")
    assert err.value.code == "wrong_secret"
    with pytest.raises(KeystoreError) as err:
        store.put("escrow", Keypair())
    assert err.value.code == "exists"
    path.chmod(0o644)
    with pytest.raises(KeystoreError) as err:
        Keystore(path, "correct horse battery staple")
    assert err.value.code == "bad_mode"
    assert json.loads(text)["kdf"] == "argon2id"


def test_consumption_burns_grx_against_the_import_register_once(chain: Chain) -> None:
    dep = chain.dep
    buyer = Keypair()
    dep.open_wallet(buyer.pubkey())
    three = [dep.oracle("oracle/platform"), dep.oracle("oracle/auditor")]
    dep.ledger.send(
        [dep.grx.mint_ix(buyer.pubkey(), 700, dep.oracle_multisig, [k.pubkey() for k in three])],
        three,
    )
    burned, sig = st.burn_consumption(dep, buyer, 5, "m-b", 1_000, 1_400)
    assert (burned, dep.grx.balance(buyer.pubkey())) == (400, 300) and sig
    assert st.burn_consumption(dep, buyer, 5, "m-b", 1_000, 1_400) == (0, None)  # a retry
    burned, _ = st.burn_consumption(dep, buyer, 6, "m-b", 1_400, 2_000)  # more than it holds
    assert burned == 300 and dep.grx.balance(buyer.pubkey()) == 0
    assert dep.grx.supply() == 0


def test_single_reading_batches_still_mint_from_the_first_register(chain: Chain) -> None:
    """A batch with one reading per meter mints nothing, but sets the mark the next starts from."""
    dep = chain.dep
    keys, owners, signing = meter_fleet(chain, 2)
    signers = oracles(chain)
    for epoch, export in ((1, 500), (2, 800), (3, 1_300)):
        ev = evidence(
            chain, epoch, [signed(signing[m], reading(m, epoch, 0, export)) for m in keys]
        )
        mint_batch(
            dep.ledger, dep.grx, dep.oracle_multisig, ev, owners, Marks("gtx1 mint"), signers
        )
    assert dep.grx.supply() == 2 * 800  # 500 -> 1300


def test_transfer_checked_bytes_match_solana_py() -> None:
    from spl.token import instructions as spl
    from spl.token.constants import TOKEN_2022_PROGRAM_ID
    from spl.token.models import TransferCheckedParams

    mint = tokens.Mint(EmbeddedLedger(), Keypair().pubkey(), 3)
    a, b = Keypair().pubkey(), Keypair().pubkey()
    ours = mint.transfer_ix(a, b, 123_456)
    theirs = spl.transfer_checked(
        TransferCheckedParams(
            program_id=TOKEN_2022_PROGRAM_ID,
            source=mint.account_of(a),
            mint=mint.address,
            dest=mint.account_of(b),
            owner=a,
            amount=123_456,
            decimals=3,
        )
    )
    assert ours == theirs


@pytest.mark.parametrize("cosigners", [0, 2])
def test_mint_to_checked_bytes_match_solana_py(cosigners: int) -> None:
    from spl.token import instructions as spl
    from spl.token.constants import TOKEN_2022_PROGRAM_ID
    from spl.token.models import MintToCheckedParams

    mint = tokens.Mint(EmbeddedLedger(), Keypair().pubkey(), 3)
    owner, authority = Keypair().pubkey(), Keypair().pubkey()
    signers = [Keypair().pubkey() for _ in range(cosigners)]
    ours = mint.mint_ix(owner, 98_765, authority, signers)
    theirs = spl.mint_to_checked(
        MintToCheckedParams(
            program_id=TOKEN_2022_PROGRAM_ID,
            mint=mint.address,
            dest=mint.account_of(owner),
            mint_authority=authority,
            amount=98_765,
            decimals=3,
            signers=signers,
        )
    )
    assert ours == theirs


def test_public_key_read_from_the_keypair_bytes_is_its_pubkey() -> None:
    for keypair in (Keypair(), Keypair.from_seed(bytes(range(32)))):
        assert public_key(keypair) == keypair.pubkey()


@pytest.mark.parametrize("signers", [0, 1, 2])
def test_the_longest_memo_allowed_lands_with_its_signers(signers: int) -> None:
    """The Memo program runs out of its 200,000 compute units on longer memos, sooner
    with every signer; `memo` refuses what would not land."""
    from gridtokenx.ledger.backend import memo, memo_max

    ledger = EmbeddedLedger()
    # fixed keys: the program logs each signer in base58, whose cost varies with the key (over
    # random keys the longest memo landing was 526-528 bytes with one signer, 488-489 with two;
    # memo_max keeps below the smallest)
    keys = [Keypair.from_seed(bytes([k + 1]) * 32) for k in range(signers)]
    pubkeys = [k.pubkey() for k in keys]
    longest = memo_max(signers)
    assert longest == 565 - 40 * signers
    ledger.send([memo("m" * longest, pubkeys)], keys)
    with pytest.raises(ValueError, match=f"at most {longest} bytes"):
        memo("m" * (longest + 1), pubkeys)
    # one byte past the Memo program's own limit fails on the chain: the bound is real
    beyond = {0: 566, 1: 527, 2: 489}[signers]  # for these keys
    with pytest.raises(LedgerError) as err:
        ledger.send([_unchecked_memo("n" * beyond, pubkeys)], keys)
    assert err.value.code == "transaction_failed"
    assert any("consumed 200000 of 200000 compute units" in line for line in err.value.logs)


def _unchecked_memo(text: str, signers: list[Any]) -> Any:
    from solders.instruction import AccountMeta, Instruction

    from gridtokenx.ledger.backend import MEMO_PROGRAM_ID

    metas = [AccountMeta(s, is_signer=True, is_writable=False) for s in signers]
    return Instruction(MEMO_PROGRAM_ID, text.encode(), metas)


def test_a_batch_of_many_meters_mints_with_the_hubs_consent_on_every_memo(chain: Chain) -> None:
    """The hub signs each mint memo, so each memo is packed shorter than one without a
    signer (a 566-byte memo with the hub's signature exceeded the Memo program's compute
    budget and the batch of 60 meters failed)."""
    dep = chain.dep
    keys, owners, signing = meter_fleet(chain, 60)
    signers = oracles(chain)
    marks = Marks("gtx1 mint")
    for epoch, export in ((1, 1_000_000), (2, 1_234_567)):
        ev = evidence(
            chain, epoch, [signed(signing[m], reading(m, epoch, 0, export)) for m in keys]
        )
        sigs = mint_batch(dep.ledger, dep.grx, dep.oracle_multisig, ev, owners, marks, signers)
        assert len(sigs) == (4 if epoch == 1 else 8)  # marks by memo length, mints by size
    assert dep.grx.supply() == 60 * 234_567
    memos = [t for entry in dep.ledger.history() for t in entry.memos if t.startswith("gtx1 mint")]
    assert [len(t.encode()) for t in memos] == [519] * 3 + [151] + [266] * 7 + [174]


def test_transactions_signed_by_libsodium_are_the_ones_solders_signs() -> None:
    """Ed25519 is deterministic: `sign_with` and `transaction` give solders' very bytes,
    and a set of keys that is not exactly the message's signers is refused as before."""
    from solders.hash import Hash
    from solders.message import Message
    from solders.system_program import TransferParams, transfer

    from gridtokenx.ledger.backend import sign_with, transaction

    payer, alice, bob = Keypair(), Keypair(), Keypair.from_seed(bytes(32))
    for message in (b"", b"x", bytes(range(256)) * 4):
        for key in (payer, bob):
            assert sign_with(key, message) == key.sign_message(message)
    blockhash = Hash.new_unique()
    ixs = [
        transfer(TransferParams(from_pubkey=k.pubkey(), to_pubkey=payer.pubkey(), lamports=5))
        for k in (alice, bob)
    ]
    ours = transaction(ixs, payer, [bob, alice, bob], blockhash)
    theirs = Transaction([payer, alice, bob], Message(ixs, payer.pubkey()), blockhash)
    assert bytes(ours) == bytes(theirs) and ours.verify_with_results() == [True] * 3
    with pytest.raises(BaseException) as ours_err:
        transaction(ixs, payer, [alice], blockhash)  # bob's signature missing
    with pytest.raises(BaseException) as theirs_err:
        Transaction([payer, alice], Message(ixs, payer.pubkey()), blockhash)
    assert type(ours_err.value) is type(theirs_err.value)


def test_a_ledger_without_signature_checks_is_in_memory_and_still_requires_signers(
    tmp_path: Path,
) -> None:
    """`verify_signatures=False` (the scenario runner, which signs everything itself): a
    forged signature lands there and only there; a missing signer is refused by both, and
    a ledger with a log always verifies."""
    from solders.message import Message
    from solders.signature import Signature
    from solders.system_program import TransferParams, transfer

    with pytest.raises(ValueError, match="verifies every signature"):
        EmbeddedLedger(tmp_path / "chain", verify_signatures=False)
    payer, alice, mallory = Keypair(), Keypair(), Keypair()
    checked, unchecked = (EmbeddedLedger(None, payer, verify_signatures=v) for v in (True, False))

    def pay(lamports: int) -> Any:
        return transfer(
            TransferParams(from_pubkey=alice.pubkey(), to_pubkey=payer.pubkey(), lamports=lamports)
        )

    def forged(ledger: EmbeddedLedger) -> Transaction:
        """alice's payment with mallory's signature in alice's place"""
        tx = Transaction(
            [payer, alice], Message([pay(9)], payer.pubkey()), ledger.latest_blockhash()
        )
        fake = Signature.from_bytes(bytes(mallory.sign_message(bytes(tx.message_data()))))
        return Transaction.populate(tx.message, [tx.signatures[0], fake])

    for ledger in (checked, unchecked):
        ledger.fund(alice.pubkey(), 10**9)
        ledger.send([pay(7)], [alice])  # signed as it should be: lands on both
    with pytest.raises(LedgerError) as err:
        checked.send_transaction(forged(checked))
    assert err.value.code == "signature_failure"
    unchecked.send_transaction(forged(unchecked))
    assert checked.svm.get_balance(alice.pubkey()) == 10**9 - 7
    assert unchecked.svm.get_balance(alice.pubkey()) == 10**9 - 16
    # without alice among the signers the system program refuses, on either ledger
    ix = pay(5)
    unsigned = Instruction(
        ix.program_id, ix.data, [AccountMeta(m.pubkey, False, m.is_writable) for m in ix.accounts]
    )
    for ledger in (checked, unchecked):
        with pytest.raises(LedgerError) as err:
            ledger.send([unsigned], [])
        assert err.value.code == "missing_required_signature"


def test_own_transactions_skip_the_svms_second_check_and_replays_verify_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transaction the ledger itself just signed (`send`, `send_many`) runs without
    LiteSVM checking its signatures again; one from elsewhere (`send_transaction`) is checked
    before and after; and a restart's replay checks every signature of the log: a record
    whose signature is bad (here: signed wrongly by a broken signer) is refused there."""
    from solders.message import Message
    from solders.signature import Signature
    from solders.system_program import TransferParams, transfer

    from gridtokenx.ledger import backend

    payer, alice, mallory = Keypair(), Keypair(), Keypair()
    ledger = EmbeddedLedger(tmp_path / "chain", payer)

    def pay(lamports: int) -> Any:
        return transfer(
            TransferParams(from_pubkey=alice.pubkey(), to_pubkey=payer.pubkey(), lamports=lamports)
        )

    def forged() -> Transaction:
        tx = Transaction(
            [payer, alice], Message([pay(9)], payer.pubkey()), ledger.latest_blockhash()
        )
        fake = Signature.from_bytes(bytes(mallory.sign_message(bytes(tx.message_data()))))
        return Transaction.populate(tx.message, [tx.signatures[0], fake])

    ledger.fund(alice.pubkey(), 10**9)
    with pytest.raises(LedgerError) as err:
        ledger.send_transaction(forged())
    assert err.value.code == "signature_failure"
    assert ledger.send_many([([pay(3)], [alice]), ([pay(4)], [alice])])[1] == str(
        ledger.history()[-1].signature
    )
    with pytest.raises(LedgerError) as err:  # the own sends left the check on for others
        ledger.send_transaction(forged())
    assert err.value.code == "signature_failure"
    assert ledger.svm.get_balance(alice.pubkey()) == 10**9 - 7
    # a signer that signs the wrong bytes: the sending ledger does not look, a replay does
    monkeypatch.setattr(backend, "sign_with", lambda key, message: Signature.from_bytes(bytes(64)))
    ledger.send([pay(5)], [alice])
    assert ledger.svm.get_balance(alice.pubkey()) == 10**9 - 12
    ledger.close()
    with pytest.raises(LedgerError) as err:
        EmbeddedLedger(tmp_path / "chain", payer)
    assert err.value.code == "replay_diverged"


@settings(max_examples=60, deadline=None)
@given(
    st_.lists(st_.tuples(st_.integers(0, 5), st_.integers(0, 3), st_.integers(0, 120)), max_size=40)
)
def test_packing_grows_a_transaction_exactly_as_fits_measures_it(
    steps: list[tuple[int, int, int]],
) -> None:
    """`Packing` (the size kept as instructions are added) decides as `fits` (the whole
    message built again): shared and new accounts, signers, memos of any length."""
    payer = Keypair()
    keys = [Keypair().pubkey() for _ in range(6)]
    program = Keypair().pubkey()
    packing, held = Packing(public_key(payer)), []
    for account, signer, memo in steps:
        ixs = [
            Instruction(
                program,
                bytes(9),
                [AccountMeta(keys[account], False, True), AccountMeta(keys[signer], True, False)],
            ),
            note("m" * memo),
        ]
        expected = fits([*held, *ixs], payer)
        assert packing.add(ixs) is expected
        if expected:
            held += ixs
    if held:
        assert packing.size() == 1 + 64 * len(packing.signers) + len(
            bytes(Message(held, public_key(payer)))
        )


def test_a_transaction_and_the_newest_are_found_by_index_on_the_ledger_and_a_reader(
    tmp_path: Path,
) -> None:
    """`landed(signature)`, `latest(n)` and `tagged(tags)` say what a pass over `history()`
    would, on the writing ledger and on a reader of its log (a lookup is an index's, not a
    scan)."""
    from gridtokenx.ledger.embedded import ChainReader

    ledger = EmbeddedLedger(tmp_path / "chain", Keypair())
    sent = [ledger.send([note(f"gtx1 test {k}")], []) for k in range(5)]
    minted = [ledger.send([note(f"{MINT} hub-1/{k} root m-1:0-{k}")], []) for k in (1, 2, 1)]
    reader = ChainReader(tmp_path / "chain")
    for view in (ledger, reader):
        history = view.history()
        assert [e.signature for e in history] == sent + minted
        assert [e.signature for e in view.latest(3)] == minted[::-1]
        assert [e.signature for e in view.latest(99)] == (sent + minted)[::-1]
        assert view.latest(0) == []
        found = view.landed(sent[2])
        assert found is not None and (found.signature, found.memos) == (sent[2], ("gtx1 test 2",))
        assert view.landed("1" * 88) is None
        assert view.memo_index()["gtx1 test 4"] == sent[4]
        # a mint's or burn's memo by its first three words, each once, oldest first
        tagged = view.tagged([f"{MINT} hub-1/1", f"{MINT} hub-9/9", f"{MINT} hub-1/1"])
        assert [e.signature for e in tagged] == [minted[0], minted[2]]
        # kinds not indexed (here "gtx1 test") are not found by their words
        assert view.tagged(["gtx1 test 3"]) == []
    later = ledger.send([note("gtx1 test 5")], [])
    assert [e.signature for e in reader.latest(1)] == [later]  # the reader caught up
    ledger.close()


def test_the_certificate_registry_folds_only_what_landed_since_its_last_look(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A certificate's look-up reads the history from where the registry left off (a site
    with years of transactions pays for the new ones), and a new registry (a restart) still
    finds every certificate from the start."""
    dep = chain.dep
    registry = Registry(dep, dep.oracle("oracle/platform"), dep.governance()[0])
    alice = Keypair()
    first = registry.issue("m-1", alice.pubkey(), "2026-11-21", 0, 1_000)
    starts: list[int] = []
    history = type(dep.ledger).history

    def recorded(self: Any, start: int = 0) -> list[Any]:
        starts.append(start)
        return history(self, start)

    monkeypatch.setattr(type(dep.ledger), "history", recorded)
    seen = len(history(dep.ledger))
    assert registry.get(first.mint).status == "pending"
    assert registry.validate(first.mint).status == "active"
    assert starts[0] == seen and 0 not in starts
    again = Registry(dep, dep.oracle("oracle/platform"), dep.governance()[0])
    assert [(c.mint, c.status) for c in again.all()] == [(first.mint, "active")]
    assert starts[-1] == 0


def test_marks_keep_each_meters_first_and_newest_minted_register() -> None:
    """`Marks.firsts`: where a meter's minting began (a first certificate's start), kept as
    the marks are, from the memos only."""
    from gridtokenx.ledger.backend import Landed
    from gridtokenx.ledger.oracle import MINT, MeterMint, mint_memo

    owner = Keypair().pubkey()
    marks = Marks(MINT)
    for tag, mints in (
        ("hub-1/2", [MeterMint("m-1", owner, 500, 900)]),
        ("hub-1/1", [MeterMint("m-1", owner, 100, 500), MeterMint("m-2", owner, 0, 40)]),
    ):
        marks.absorb(Landed("-", None, (mint_memo(tag, b"\0" * 32, mints),)))  # type: ignore[arg-type]
    assert marks.marks == {"m-1": 900, "m-2": 40}
    assert marks.firsts == {"m-1": 100, "m-2": 0}


def test_the_memo_kinds_looked_up_by_tag_are_the_ones_indexed() -> None:
    """The statement's mints and burns and the co-signer's freeze and thaw records (their
    memos' kinds as the code writes them) are what `History.tagged` indexes."""
    from gridtokenx.ledger.backend import TAGGED_KINDS, tag_of
    from gridtokenx.ledger.deployment import freeze_memo

    owner = Keypair().pubkey()
    written = [
        f"{MINT} hub-1/7 00 m-1:0-5",
        f"{st.BURN} 1234 00 m-1:0-5",
        freeze_memo("freeze", owner, "r-1", "operator"),
        freeze_memo("thaw", owner, "r-2", "operator"),
    ]
    assert [tag_of(t) for t in written] == [
        f"{MINT} hub-1/7",
        f"{st.BURN} 1234",
        f"gtx1 freeze {owner}",
        f"gtx1 thaw {owner}",
    ]
    assert len(TAGGED_KINDS) == 4 and tag_of(f"{st.ESCROW} o-1 5") is None


def test_a_closed_ledger_lands_nothing(tmp_path: Path) -> None:
    """After `close` a send raises `ledger_closed`: it would otherwise land in the process's
    memory only, never in the log, while the books recorded it as on the chain."""
    ledger = EmbeddedLedger(tmp_path / "chain", Keypair())
    ledger.send([note("gtx1 test before")], [])
    ledger.close()
    for send in (
        lambda: ledger.send([note("gtx1 test after")], []),
        lambda: ledger.send_many([([note("gtx1 test after")], [])]),
    ):
        with pytest.raises(LedgerError) as err:
            send()
        assert err.value.code == "ledger_closed"
    assert [e.memos for e in ledger.history()] == [("gtx1 test before",)]
