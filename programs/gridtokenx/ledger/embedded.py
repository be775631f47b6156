"""The embedded ledger: a real SVM in-process (solders' LiteSVM) with Token-2022, ATA and
Memo loaded and signature verification on.

Persistence is an append-only log of the transactions that landed (`chain.log`): each record
is length, CRC-32 and the signed transaction bytes, fsynced before `send` returns. At start
the log is replayed into a fresh LiteSVM (blockhash check off for the replay only, signatures
still verified), which rebuilds every account exactly. A torn last record (a crash while
appending) is cut off: its transaction was never reported as landed to anyone.

`ChainReader` follows another process's log read-only (a co-signer, `ledger authorities`):
it replays complete records as they appear and never writes or truncates.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.pubkey import Pubkey
from solders.transaction import Transaction
from solders.transaction_metadata import FailedTransactionMetadata

from gridtokenx.ledger.backend import Landed, LedgerError, error_code, memos_of, transaction

FAUCET_LAMPORTS = 100_000 * 10**9  # the payer's local airdrop; the same at every replay
_RECORD = struct.Struct("<II")


class EmbeddedLedger:
    def __init__(self, path: Path | None = None, payer: Keypair | None = None) -> None:
        self._payer = payer or Keypair()
        self.svm = LiteSVM()
        self.svm.airdrop(self._payer.pubkey(), FAUCET_LAMPORTS)
        self._landed: list[Landed] = []
        self._memos: dict[str, str] = {}
        self._log = None
        if path is not None:
            path.mkdir(parents=True, exist_ok=True)
            log_path = path / "chain.log"
            self._replay(log_path)
            fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._log = os.fdopen(fd, "ab")

    @property
    def payer(self) -> Keypair:
        return self._payer

    def _replay(self, log_path: Path) -> None:
        if not log_path.exists():
            return
        data = log_path.read_bytes()
        offset = 0
        self.svm = self.svm.with_blockhash_check(False)
        while offset + _RECORD.size <= len(data):
            size, crc = _RECORD.unpack_from(data, offset)
            body = data[offset + _RECORD.size : offset + _RECORD.size + size]
            if len(body) < size or zlib.crc32(body) != crc:
                break  # torn tail
            tx = Transaction.from_bytes(body)
            self.svm.expire_blockhash()  # a slot per record: durable nonces advance again
            result = self.svm.send_transaction(tx)
            if isinstance(result, FailedTransactionMetadata):
                raise LedgerError("replay_diverged", result.meta().logs())
            self._remember(tx)
            offset += _RECORD.size + size
        if offset < len(data):
            with open(log_path, "r+b") as f:
                f.truncate(offset)
                os.fsync(f.fileno())
        self.svm = self.svm.with_blockhash_check(True)
        self.svm.expire_blockhash()

    def _remember(self, tx: Transaction) -> Landed:
        landed = Landed(str(tx.signatures[0]), tx, memos_of(tx))
        self._landed.append(landed)
        for text in landed.memos:
            self._memos.setdefault(text, landed.signature)
        return landed

    def rent(self, size: int) -> int:
        return int(self.svm.minimum_balance_for_rent_exemption(size))

    def fund(self, address: Pubkey, lamports: int) -> None:
        from solders.system_program import TransferParams
        from solders.system_program import transfer as sol_transfer

        self.send(
            [
                sol_transfer(
                    TransferParams(
                        from_pubkey=self._payer.pubkey(), to_pubkey=address, lamports=lamports
                    )
                )
            ],
            [],
        )

    def send(self, instructions: Sequence[Instruction], signers: Sequence[Keypair]) -> str:
        tx = transaction(instructions, self._payer, signers, self.svm.latest_blockhash())
        try:
            return self.send_transaction(tx)
        except LedgerError as err:
            if err.code != "already_processed":
                raise
        # the very same instructions again (e.g. an idempotent account creation): a new
        # blockhash makes it a new transaction, as a cluster's next slot would
        self.svm.expire_blockhash()
        tx = transaction(instructions, self._payer, signers, self.svm.latest_blockhash())
        return self.send_transaction(tx)

    def send_transaction(self, tx: Transaction) -> str:
        """Submit a transaction signed elsewhere (e.g. by oracles one by one). The
        blockhash stays valid until a duplicate needs a new one, so signatures gathered
        over a network round trip still land. A transaction on another blockhash is a
        durable-nonce one (a governance proposal signed over days) or a stale one: a new
        slot begins first, as time would pass on a cluster, so its nonce can advance."""
        if tx.message.recent_blockhash != self.svm.latest_blockhash():
            self.svm.expire_blockhash()
        result = self.svm.send_transaction(tx)
        if isinstance(result, FailedTransactionMetadata):
            raise LedgerError(error_code(str(result.err())), result.meta().logs())
        if self._log is not None:
            body = bytes(tx)
            self._log.write(_RECORD.pack(len(body), zlib.crc32(body)) + body)
            self._log.flush()
            os.fsync(self._log.fileno())
        return self._remember(tx).signature

    def latest_blockhash(self) -> Hash:
        return self.svm.latest_blockhash()

    def blockhash_valid(self, blockhash: Hash) -> bool:
        """Only the current one: the embedded chain keeps no older blockhashes (a restart,
        or a duplicate that needed a new slot, expires it)."""
        return blockhash == self.svm.latest_blockhash()

    def account_data(self, address: Pubkey) -> bytes | None:
        account = self.svm.get_account(address)
        return None if account is None else bytes(account.data)

    def history(self, start: int = 0) -> list[Landed]:
        return self._landed[start:]

    def memo_index(self) -> dict[str, str]:
        return self._memos

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


class ChainReader:
    """A read-only view of an embedded chain that another process writes.

    Each look replays the records appended since the last one (a torn or half-written tail
    is left for later), so a co-signer reads the same accounts and memos the platform wrote,
    with every signature verified again by its own SVM."""

    def __init__(self, path: Path) -> None:
        self.log_path = path / "chain.log"
        self.svm = LiteSVM().with_blockhash_check(False)
        self._offset = 0
        self._landed: list[Landed] = []
        self._memos: dict[str, str] = {}
        self._funded = False

    def refresh(self) -> None:
        if not self.log_path.exists():
            return
        with open(self.log_path, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        offset = 0
        while offset + _RECORD.size <= len(data):
            size, crc = _RECORD.unpack_from(data, offset)
            body = data[offset + _RECORD.size : offset + _RECORD.size + size]
            if len(body) < size or zlib.crc32(body) != crc:
                break  # not yet complete
            tx = Transaction.from_bytes(body)
            if not self._funded:  # the writer's payer had the same local airdrop
                self.svm.airdrop(tx.message.account_keys[0], FAUCET_LAMPORTS)
                self._funded = True
            self.svm.expire_blockhash()
            result = self.svm.send_transaction(tx)
            if isinstance(result, FailedTransactionMetadata):
                raise LedgerError("replay_diverged", result.meta().logs())
            landed = Landed(str(tx.signatures[0]), tx, memos_of(tx))
            self._landed.append(landed)
            for text in landed.memos:
                self._memos.setdefault(text, landed.signature)
            offset += _RECORD.size + size
        self._offset += offset

    def account_data(self, address: Pubkey) -> bytes | None:
        self.refresh()
        account = self.svm.get_account(address)
        return None if account is None else bytes(account.data)

    def history(self, start: int = 0) -> list[Landed]:
        self.refresh()
        return self._landed[start:]

    def memo_index(self) -> dict[str, str]:
        self.refresh()
        return self._memos
