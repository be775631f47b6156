"""Self-custody on the embedded ledger (issue #14 item 4): a household that keeps its own key
approves the platform's delegate once (SPL Approve) for an allowance; the platform escrows
and burns within it, and no platform key moves anything beyond it."""

from __future__ import annotations

from pathlib import Path

import pytest
from ledger_fixtures import Chain, make_chain
from solders.keypair import Keypair

from gridtokenx.ledger import settlement as st
from gridtokenx.ledger.backend import LedgerError

SECRET = bytes(range(32))


@pytest.fixture
def chain(tmp_path: Path) -> Chain:
    return make_chain(tmp_path, SECRET)


def test_no_platform_key_moves_a_self_custody_wallets_tokens_beyond_its_allowance(
    chain: Chain,
) -> None:
    dep = chain.dep
    household = Keypair()  # its key never enters the platform's keystore
    dep.open_wallet(household.pubkey())
    signers = [dep.oracle("oracle/platform"), dep.oracle("oracle/auditor")]
    dep.ledger.send(
        [
            dep.grx.mint_ix(
                household.pubkey(), 1_000, dep.oracle_multisig, [k.pubkey() for k in signers]
            )
        ],
        signers,
    )
    delegate = chain.keys.ensure("delegate")
    assert dep.grx.allowance(household.pubkey()) is None
    # the household's one signature: the delegate may move 300 Wh of GRX, no more
    dep.ledger.send([dep.grx.approve_ix(household.pubkey(), delegate.pubkey(), 300)], [household])
    assert dep.grx.allowance(household.pubkey()) == (delegate.pubkey(), 300)
    wallet = st.Delegated(household.pubkey(), delegate)
    st.lock(dep, wallet, "o-1", "grx", 200)  # a sell order's escrow, signed by the delegate
    assert dep.grx.balance(household.pubkey()) == 800
    assert dep.grx.balance(dep.escrow.pubkey()) == 200
    assert dep.grx.allowance(household.pubkey()) == (delegate.pubkey(), 100)
    with pytest.raises(LedgerError) as err:  # 101 > the 100 left
        st.lock(dep, wallet, "o-2", "grx", 101)
    assert err.value.code == "insufficient_funds"
    # a burn against import is bounded by the allowance too (not by the balance of 800)
    burned, _ = st.burn_consumption(dep, wallet, 7, "m-1", 0, 500)
    assert burned == 100 and dep.grx.balance(household.pubkey()) == 700
    assert dep.grx.allowance(household.pubkey()) is None  # used up: the chain drops it
    # every key the platform holds (and the co-signers' development keys): refused
    thief = Keypair()
    dep.open_wallet(thief.pubkey())
    names = [n for n in chain.keys.names() if n != "delegate"]
    assert {"payer", "escrow", "registry", "oracle/platform", "governance/platform"} <= set(names)
    for name in [*names, "delegate"]:
        key = chain.keys.get(name)
        for ix in (
            dep.grx.transfer_ix(household.pubkey(), thief.pubkey(), 1, key.pubkey()),
            dep.grx.burn_ix(household.pubkey(), 1, key.pubkey()),
        ):
            with pytest.raises(LedgerError):
                dep.ledger.send([ix], [key])
    for party in ("grid-operator", "auditor"):
        key = dep.oracle(f"oracle/{party}")
        with pytest.raises(LedgerError):
            dep.ledger.send(
                [dep.grx.transfer_ix(household.pubkey(), thief.pubkey(), 1, key.pubkey())], [key]
            )
    assert dep.grx.balance(household.pubkey()) == 700 and dep.grx.balance(thief.pubkey()) == 0
    # the household itself still moves its own tokens, and may grant a new allowance
    dep.ledger.send([dep.grx.transfer_ix(household.pubkey(), thief.pubkey(), 5)], [household])
    assert dep.grx.balance(thief.pubkey()) == 5
