"""The embedded ledger: a real SVM in-process (solders' LiteSVM) with Token-2022, ATA and
Memo loaded, signature verification on. Not persisted yet (issue 6)."""

from __future__ import annotations

from collections.abc import Sequence

from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.message import Message
from solders.pubkey import Pubkey
from solders.transaction import Transaction
from solders.transaction_metadata import FailedTransactionMetadata

# Token-2022 custom error codes we name (spl-token-2022 TokenError).
TOKEN_ERRORS = {
    1: "insufficient_funds",
    4: "owner_mismatch",
    17: "account_frozen",
    18: "mint_decimals_mismatch",
}


class LedgerError(Exception):
    """A transaction the chain refused, with a stable code and the program logs."""

    def __init__(self, code: str, logs: Sequence[str]) -> None:
        super().__init__(code)
        self.code = code
        self.logs = list(logs)


class EmbeddedLedger:
    def __init__(self) -> None:
        self.svm = LiteSVM()
        self.payer = Keypair()
        self.svm.airdrop(self.payer.pubkey(), 1_000 * 10**9)

    def rent(self, size: int) -> int:
        return int(self.svm.minimum_balance_for_rent_exemption(size))

    def send(self, instructions: Sequence[Instruction], signers: Sequence[Keypair]) -> str:
        """Submit one transaction paid by the ledger's payer; its signature, or LedgerError."""
        message = Message(list(instructions), self.payer.pubkey())
        unique = {k.pubkey(): k for k in (self.payer, *signers)}
        tx = Transaction(list(unique.values()), message, self.svm.latest_blockhash())
        result = self.svm.send_transaction(tx)
        # a fresh blockhash for the next transaction, so that a retry of the same
        # instructions is a new transaction rather than an "already processed" duplicate
        self.svm.expire_blockhash()
        if isinstance(result, FailedTransactionMetadata):
            raise LedgerError(_code(str(result.err())), result.meta().logs())
        return str(tx.signatures[0])

    def account_data(self, address: Pubkey) -> bytes | None:
        account = self.svm.get_account(address)
        return None if account is None else bytes(account.data)


def _code(err: str) -> str:
    if "Custom(" in err:
        number = int(err.split("Custom(")[1].split(")")[0])
        return TOKEN_ERRORS.get(number, f"token_error_{number}")
    if "MissingRequiredSignature" in err:
        return "missing_required_signature"
    if "AlreadyProcessed" in err:
        return "already_processed"
    return "transaction_failed"
