"""GRX on a real SVM (LiteSVM, in-process): multisig minting and frozen-by-default accounts.
Everything here is enforced by the standard Token-2022 program, not by our code."""

from __future__ import annotations

import pytest
from solders.keypair import Keypair

from gridtokenx.ledger.embedded import EmbeddedLedger, LedgerError
from gridtokenx.ledger.grx import GrxToken


@pytest.fixture
def grx() -> tuple[GrxToken, list[Keypair]]:
    ledger = EmbeddedLedger()
    oracles = [Keypair() for _ in range(4)]
    token = GrxToken.create(ledger, [o.pubkey() for o in oracles], 3, Keypair())
    return token, oracles


def test_three_of_four_oracles_mint_fewer_fail_on_chain(
    grx: tuple[GrxToken, list[Keypair]],
) -> None:
    token, oracles = grx
    alice = Keypair()
    token.open_account(alice.pubkey())
    token.approve(alice.pubkey())
    with pytest.raises(LedgerError):
        token.mint_wh(alice.pubkey(), 1_500, oracles[:2])  # two signatures of three needed
    assert token.balance_wh(alice.pubkey()) == 0
    token.mint_wh(alice.pubkey(), 1_500, oracles[1:])  # any three
    assert token.balance_wh(alice.pubkey()) == 1_500 and token.supply_wh() == 1_500
    with pytest.raises(LedgerError):  # an outsider's key is not one of the multisig
        token.mint_wh(alice.pubkey(), 1, [oracles[0], oracles[1], Keypair()])


def test_frozen_accounts_cannot_hold_or_trade(grx: tuple[GrxToken, list[Keypair]]) -> None:
    token, oracles = grx
    alice, bob = Keypair(), Keypair()
    token.ledger.svm.airdrop(alice.pubkey(), 10**9)
    token.open_account(alice.pubkey())
    token.open_account(bob.pubkey())
    with pytest.raises(LedgerError) as err:
        token.mint_wh(alice.pubkey(), 1_000, oracles[:3])  # not approved: frozen
    assert err.value.code == "account_frozen"
    token.approve(alice.pubkey())
    token.mint_wh(alice.pubkey(), 1_000, oracles[:3])
    with pytest.raises(LedgerError) as err:
        token.transfer_wh(alice, bob.pubkey(), 400)  # bob is still frozen
    assert err.value.code == "account_frozen"
    token.approve(bob.pubkey())
    token.transfer_wh(alice, bob.pubkey(), 400)
    assert (token.balance_wh(alice.pubkey()), token.balance_wh(bob.pubkey())) == (600, 400)
    token.suspend(alice.pubkey())  # suspending a user freezes its account
    with pytest.raises(LedgerError) as err:
        token.transfer_wh(alice, bob.pubkey(), 1)
    assert err.value.code == "account_frozen"
    assert token.supply_wh() == 1_000
