"""The cluster backend (JSON-RPC via solana-py) against a thin JSON-RPC server over LiteSVM:
the same deployment, minting and settlement code, and retries found on the cluster."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rpc_server import RpcServer
from solders.keypair import Keypair

from gridtokenx.ledger import settlement as st
from gridtokenx.ledger.backend import LedgerError, note
from gridtokenx.ledger.deployment import Deployment
from gridtokenx.ledger.keystore import Keystore
from gridtokenx.ledger.rpc import RpcLedger


@pytest.fixture
def server() -> Iterator[RpcServer]:
    s = RpcServer()
    yield s
    s.close()


def test_deployment_and_settlement_over_json_rpc(server: RpcServer, tmp_path: Path) -> None:
    keys = Keystore(tmp_path / "keys.json", os.urandom(32))
    payer = keys.ensure("payer")
    server.svm.airdrop(payer.pubkey(), 1_000 * 10**9)
    ledger = RpcLedger(server.url, payer)
    dep = Deployment.create(ledger, keys)
    alice, bob, carol = Keypair(), Keypair(), Keypair()
    dep.open_wallet(alice.pubkey())
    dep.open_wallet(bob.pubkey())
    dep.open_wallet(carol.pubkey(), approve=False)  # pending: GRX and THB frozen
    assert (dep.grx.is_frozen(carol.pubkey()), dep.thb.is_frozen(carol.pubkey())) == (True, True)
    assert (dep.grx.is_frozen(alice.pubkey()), dep.thb.is_frozen(bob.pubkey())) == (False, False)
    dep.top_up(dep.escrow.pubkey(), 1_000_000, "float")
    trades = [st.Trade("1", alice.pubkey(), bob.pubkey(), 0, 600_000, 594_000, 6_000, 0)]
    first = st.settle_epoch(dep, 3, trades)
    assert dep.thb.balance(bob.pubkey()) == 594_000
    # a fresh client (a restart) finds the settlement on the cluster and pays nothing again
    again = Deployment(
        RpcLedger(server.url, payer),
        keys,
        dep.grx,
        dep.thb,
        dep.oracle_multisig,
        dep.oracle_signers,
        dep.oracles_required,
        dep.governance_multisig,
        False,
    )
    again.grx.ledger = again.thb.ledger = again.ledger
    assert st.settle_epoch(again, 3, trades) == first
    assert again.thb.balance(bob.pubkey()) == 594_000
    assert dep.top_up(dep.escrow.pubkey(), 1_000_000, "float") == again.top_up(
        dep.escrow.pubkey(), 1_000_000, "float"
    )
    with pytest.raises(LedgerError) as err:  # a refusal comes back as a stable code
        ledger.send([dep.thb.transfer_ix(bob.pubkey(), carol.pubkey(), 1)], [bob])
    assert err.value.code == "account_frozen"
    assert {
        "sendTransaction",
        "getSignatureStatuses",
        "getSignaturesForAddress",
        "getTransaction",
    } <= set(server.requests)
    ledger.close()


def test_one_cluster_client_serves_many_threads_at_once(server: RpcServer, tmp_path: Path) -> None:
    """The platform's request threads, group commit and epoch clock share one ledger: one
    event loop, one history (without its lock: 'This event loop is already running')."""
    keys = Keystore(tmp_path / "keys.json", os.urandom(32))
    payer = keys.ensure("payer")
    server.svm.airdrop(payer.pubkey(), 1_000 * 10**9)
    ledger = RpcLedger(server.url, payer)
    failures: list[BaseException] = []
    landed: list[str] = []

    def work(k: int) -> None:
        try:
            for j in range(5):
                landed.append(ledger.send([note(f"thread {k} memo {j}")], []))
                assert ledger.account_data(payer.pubkey()) == b""  # a wallet: no data
                ledger.memo_index()
        except BaseException as exc:  # every thread's failure, reported below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert failures == []
    index = ledger.memo_index()
    memos = {f"thread {k} memo {j}" for k in range(6) for j in range(5)}
    assert memos <= set(index)
    assert sorted(index[m] for m in memos) == sorted(landed)
    ledger.close()


def test_a_read_does_not_wait_for_another_threads_send_to_confirm(
    server: RpcServer, tmp_path: Path
) -> None:
    """A request thread's balance read while the group commit's send waits for its
    confirmation (seconds on a cluster): answered at once, the send lands after."""
    keys = Keystore(tmp_path / "keys.json", os.urandom(32))
    payer = keys.ensure("payer")
    server.svm.airdrop(payer.pubkey(), 1_000 * 10**9)
    ledger = RpcLedger(server.url, payer)
    server.confirming.clear()
    landed: list[str] = []
    sending = threading.Thread(target=lambda: landed.append(ledger.send([note("slow")], [])))
    sending.start()
    deadline = time.monotonic() + 30
    while "getSignatureStatuses" not in server.requests:  # the send waits for confirmation
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert ledger.account_data(payer.pubkey()) == b""  # answered while the send waits
    assert ledger.rent(0) == server.svm.minimum_balance_for_rent_exemption(0)
    assert sending.is_alive() and landed == []
    server.confirming.set()
    sending.join(timeout=30)
    assert ledger.memo_index()["slow"] == landed[0]
    ledger.close()
