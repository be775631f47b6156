"""Governance proposals on the embedded ledger: signatures gathered over time from each
party's own keystore, and a proposal short of its threshold refused by the chain itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ledger_fixtures import Chain, make_chain
from services import gridtokenx
from solders.keypair import Keypair
from sqlalchemy import create_engine

from gridtokenx import auditlog, governance
from gridtokenx.adapters import books
from gridtokenx.adapters.tables import audit_log
from gridtokenx.errors import CodedError
from gridtokenx.governance import Proposals
from gridtokenx.ledger import tokens
from gridtokenx.ledger.backend import LedgerError
from gridtokenx.ledger.embedded import ChainReader

SECRET = bytes(range(32))


@pytest.fixture
def chain(tmp_path: Path) -> Chain:
    return make_chain(tmp_path, SECRET)


def gov_key(chain: Chain, party: str) -> Keypair:
    """A party's governance key (each from its own development keystore)."""
    return chain.dep.oracle(f"governance/{party}")


def refused(call: Any) -> str:
    with pytest.raises(CodedError) as err:
        call()
    return err.value.code


def test_a_pause_needs_two_parties_signatures_and_the_chain_refuses_fewer(chain: Chain) -> None:
    dep, store = chain.dep, Proposals(chain.path / "governance.json")
    engine = books.connect(f"sqlite:///{chain.path / 'books.db'}")
    # a message naming one party's key only: every named key signs, the multisig refuses
    alone = governance.propose(dep, store, "pause", {}, ["platform"])
    governance.sign(dep, store, alone.id, gov_key(chain, "platform"))
    assert refused(lambda: governance.execute(dep, store, alone.id)) == "missing_required_signature"
    # two parties named, one signed: the chain's signature check refuses
    p = governance.propose(dep, store, "pause", {}, ["platform", "grid-operator"])
    assert refused(lambda: governance.sign(dep, store, p.id, Keypair())) == "not_a_signer"
    governance.sign(dep, store, p.id, gov_key(chain, "platform"))
    assert store.get(p.id).as_dict()["missing"] == [str(gov_key(chain, "grid-operator").pubkey())]
    assert refused(lambda: governance.execute(dep, store, p.id)) == "signature_failure"
    assert not dep.grx.is_paused()
    for _ in range(3):  # time passes: the durable nonce keeps the message valid
        chain.ledger.svm.expire_blockhash()
    governance.sign(dep, store, p.id, gov_key(chain, "grid-operator"))
    done = governance.execute(dep, store, p.id, engine)
    assert done.status == "executed" and dep.grx.is_paused()
    assert chain.ledger.memo_index()[f"gtx1 governance {p.id} pause"] == done.transaction
    assert refused(lambda: governance.execute(dep, store, p.id)) == "not_open"
    entry = auditlog.entries(engine, limit=1)[0]
    assert (entry["actor"], entry["action"], entry["detail"]) == (
        "governance",
        "governance.pause",
        {"proposal": p.id, "transaction": done.transaction},
    )
    # a signer checks what it signs: a proposal edited after the fact is refused
    r = governance.propose(dep, store, "resume", {}, ["grid-operator", "auditor"])
    r.kind = "pause"
    store.put(r)
    assert refused(lambda: governance.sign(dep, store, r.id, gov_key(chain, "auditor"))) == (
        "not_as_described"
    )
    r.kind = "resume"
    store.put(r)
    for party in ("grid-operator", "auditor"):
        governance.sign(dep, store, r.id, gov_key(chain, party))
    governance.execute(dep, store, r.id, engine)
    assert not dep.grx.is_paused()


def test_rotating_an_oracle_key_and_the_fee_by_proposal(chain: Chain) -> None:
    dep, store = chain.dep, Proposals(chain.path / "governance.json")
    alice = Keypair()
    dep.open_wallet(alice.pubkey())
    successor = Keypair()
    p = governance.propose(
        dep,
        store,
        "rotate-oracle",
        {"party": "auditor", "key": str(successor.pubkey())},
        ["platform", "auditor"],
    )
    assert p.authority == "oracle"
    for party in ("platform", "auditor"):
        governance.sign(dep, store, p.id, dep.oracle(f"oracle/{party}"))
    governance.execute(dep, store, p.id, None, chain.path / "deployment.json")
    assert str(dep.grx.mint_authority()) == p.args["multisig"] == str(dep.oracle_multisig)
    platform, old = dep.oracle("oracle/platform"), dep.oracle("oracle/auditor")
    with pytest.raises(LedgerError):  # the auditor's old key no longer counts
        dep.ledger.send(
            [
                dep.grx.mint_ix(
                    alice.pubkey(), 5, dep.oracle_multisig, [platform.pubkey(), old.pubkey()]
                )
            ],
            [platform, old],
        )
    dep.ledger.send(
        [
            dep.grx.mint_ix(
                alice.pubkey(), 5, dep.oracle_multisig, [platform.pubkey(), successor.pubkey()]
            )
        ],
        [platform, successor],
    )
    assert dep.grx.balance(alice.pubkey()) == 5
    saved = json.loads((chain.path / "deployment.json").read_text())
    assert saved["parties"]["auditor"]["oracle"] == str(successor.pubkey())
    # the fee: a memo the governance keys sign; only a threshold of them counts
    low = governance.propose(dep, store, "fee", {"bps": "50"}, ["platform"])
    governance.sign(dep, store, low.id, gov_key(chain, "platform"))
    governance.execute(dep, store, low.id)
    assert governance.fee_from_chain(dep.ledger, dep) is None  # one party: not a decision
    fee = governance.propose(dep, store, "fee", {"bps": "75"}, ["platform", "grid-operator"])
    for party in ("platform", "grid-operator"):
        governance.sign(dep, store, fee.id, gov_key(chain, party))
    governance.execute(dep, store, fee.id)
    assert governance.fee_from_chain(dep.ledger, dep) == 75
    assert refused(lambda: governance.propose(dep, store, "fee", {"bps": "x"}, ["platform"])) == (
        "bad_arguments"
    )
    assert refused(lambda: governance.propose(dep, store, "mint", {}, ["platform"])) == (
        "unknown_kind"
    )
    assert refused(lambda: governance.propose(dep, store, "pause", {}, ["mallory"])) == (
        "bad_signers"
    )


def test_governance_from_the_command_line(chain: Chain) -> None:
    data = chain.path
    chain.ledger.close()  # the embedded chain has one writer: the commands below
    env = {"GTX_KEYSTORE_KEY": SECRET.hex()}

    def run(*args: str, key: str | None = None) -> Any:
        done = gridtokenx(
            "governance",
            *args,
            "--data",
            str(data),
            env={**env, **({"GTX_KEYSTORE_KEY": key} if key else {})},
        )
        return done

    proposed = run("propose", "pause", "--signers", "platform,auditor")
    assert proposed.returncode == 0, proposed.stderr
    pid = str(json.loads(proposed.stdout)["id"])
    signed = run("sign", pid, "--role", "platform", "--keystore", str(data / "keys.json"))
    assert signed.returncode == 0, signed.stderr
    short = run("execute", pid)
    assert short.returncode == 1 and "signature_failure" in short.stderr
    auditor_key = (data / "cosigners" / "auditor.key").read_text().strip()
    keystore = str(data / "cosigners" / "auditor.json")
    assert (
        run("sign", pid, "--role", "auditor", "--keystore", keystore, key=auditor_key).returncode
        == 0
    )
    executed = run("execute", pid)
    assert executed.returncode == 0, executed.stderr
    listed = json.loads(run("list", "--json").stdout)["proposals"]
    assert [(p["id"], p["kind"], p["status"], p["missing"]) for p in listed] == [
        (int(pid), "pause", "executed", [])
    ]
    reader = ChainReader(data / "chain")
    mint = reader.account_data(chain.dep.grx.address)
    assert mint is not None
    config = tokens.mint_extension(mint, tokens.PAUSABLE_CONFIG)
    assert config is not None and config[32] == 1  # paused, on the chain
    engine = create_engine(f"sqlite:///{data / 'books.db'}")
    assert auditlog.entries(engine, limit=1)[0]["action"] == "governance.pause"
    audited = gridtokenx("audit", "--data", str(data), env=env)
    report = json.loads(audited.stdout)
    assert audited.returncode == 0 and report["checked"]["governance"] == 1, report
    with engine.begin() as c:  # an executed proposal the audit log does not hold
        c.execute(audit_log.delete())
    audited = gridtokenx("audit", "--data", str(data), env=env)
    assert audited.returncode == 1
    assert "governance proposal missing from the audit log" in audited.stdout
