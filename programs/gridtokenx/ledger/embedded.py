"""The embedded ledger: a real SVM in-process (solders' LiteSVM) with Token-2022, ATA and
Memo loaded and signature verification on (off only for an in-memory ledger whose one
process signs everything, on request: see `EmbeddedLedger`).

Persistence is an append-only log of the transactions that landed (`chain.log`): each record
is length, CRC-32 and the signed transaction bytes, fsynced before `send` returns. At start
the log is replayed into a fresh LiteSVM (blockhash check off for the replay only, signatures
still verified), which rebuilds every account exactly. A torn last record (a crash while
appending) is cut off: its transaction was never reported as landed to anyone.

Several processes may write one log (platform instances sharing a data directory): each
keeps its own replica, a writer holds an exclusive `flock` on the log while it catches up
with the records others appended (replayed with the blockhash check off, signatures still
verified) and appends its own, and every read first applies what others appended. So each
transaction is checked against the state every earlier record made, whoever wrote it, and
the log stays one sequence that replays to the same accounts. A torn tail is cut off only
under the lock (a live writer's half-written record is never mistaken for one).

`ChainReader` follows another process's log read-only (a co-signer, `ledger authorities`):
it replays complete records as they appear and never writes or truncates.
"""

from __future__ import annotations

import fcntl
import os
import struct
import threading
import zlib
from collections.abc import Sequence
from pathlib import Path

from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.pubkey import Pubkey
from solders.transaction import Transaction
from solders.transaction_metadata import FailedTransactionMetadata, TransactionMetadata

from gridtokenx.ledger.backend import (
    History,
    Landed,
    LedgerError,
    Replica,
    error_code,
    transaction,
)

FAUCET_LAMPORTS = 100_000 * 10**9  # the payer's local airdrop; the same at every replay
_RECORD = struct.Struct("<II")


class EmbeddedLedger(Replica):
    def __init__(
        self,
        path: Path | None = None,
        payer: Keypair | None = None,
        *,
        verify_signatures: bool = True,
    ) -> None:
        """`verify_signatures=False` is for an in-memory ledger (no `path`) whose every
        transaction its own process signs (the scenario runner): LiteSVM then does not
        re-check their Ed25519 signatures. Everything else is as before: the programs
        still require each signer (the message's signer flags), sizes, blockhashes and
        duplicates are still checked, and the bytes that land are the same."""
        if not verify_signatures and path is not None:
            raise ValueError("a ledger with a log verifies every signature")
        self._payer = payer or Keypair()
        self._verify = verify_signatures
        self.svm = LiteSVM() if verify_signatures else LiteSVM().with_sigverify(False)
        self.svm.airdrop(self._payer.pubkey(), FAUCET_LAMPORTS)
        self._history = History()
        self._log = None
        self._closed = False  # `close`: no transaction lands any more
        self._offset = 0  # bytes of the log applied to this replica
        self._mutex = threading.RLock()  # this process's threads: one replica, one writer
        if path is not None:
            path.mkdir(parents=True, exist_ok=True)
            log_path = path / "chain.log"
            fd = os.open(log_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            self._log = os.fdopen(fd, "r+b", buffering=0)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                self._replay(log_path)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

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
        self._offset = offset
        self.svm = self.svm.with_blockhash_check(True)
        self.svm.expire_blockhash()

    def _catch_up(self) -> None:
        """Apply the complete records other processes appended since the last look. The
        blockhash stays as it is (a transaction signed against it still lands), unless a
        record needs a new slot (a durable nonce advancing): then one begins and it is
        sent again."""
        if self._log is None:
            return
        end = os.fstat(self._log.fileno()).st_size
        if end <= self._offset:
            return
        data = os.pread(self._log.fileno(), end - self._offset, self._offset)
        offset = 0
        self.svm = self.svm.with_blockhash_check(False)
        try:
            while offset + _RECORD.size <= len(data):
                size, crc = _RECORD.unpack_from(data, offset)
                body = data[offset + _RECORD.size : offset + _RECORD.size + size]
                if len(body) < size or zlib.crc32(body) != crc:
                    break  # being written, or torn: left for later
                tx = Transaction.from_bytes(body)
                result = self.svm.send_transaction(tx)
                if isinstance(result, FailedTransactionMetadata):
                    self.svm.expire_blockhash()
                    result = self.svm.send_transaction(tx)
                if isinstance(result, FailedTransactionMetadata):
                    raise LedgerError("replay_diverged", result.meta().logs())
                self._remember(tx)
                offset += _RECORD.size + size
        finally:
            self.svm = self.svm.with_blockhash_check(True)
            self._offset += offset

    def _remember(self, tx: Transaction) -> Landed:
        return self._history.add(tx)

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
        with self._mutex, self._locked():
            tx = transaction(instructions, self._payer, signers, self.svm.latest_blockhash())
            try:
                return self._send(tx, own=True)
            except LedgerError as err:
                if err.code != "already_processed":
                    raise
            # the very same instructions again (e.g. an idempotent account creation): a new
            # blockhash makes it a new transaction, as a cluster's next slot would
            self.svm.expire_blockhash()
            tx = transaction(instructions, self._payer, signers, self.svm.latest_blockhash())
            return self._send(tx, own=True)

    def send_many(
        self, transactions: Sequence[tuple[Sequence[Instruction], Sequence[Keypair]]]
    ) -> list[str | LedgerError]:
        """Several transactions under one lock of the log and one fsync (a group commit):
        each lands or fails on its own (its signature or its `LedgerError`, in order), and
        none is reported before all that landed are durable."""
        out: list[str | LedgerError] = []
        with self._mutex, self._locked():
            self._writable()
            records = []
            for instructions, signers in transactions:
                blockhash = self.svm.latest_blockhash()
                tx = transaction(instructions, self._payer, signers, blockhash)
                result = self._execute(tx, own=True)
                if isinstance(result, FailedTransactionMetadata):
                    out.append(LedgerError(error_code(str(result.err())), result.meta().logs()))
                    continue
                body = bytes(tx)
                records.append(_RECORD.pack(len(body), zlib.crc32(body)) + body)
                out.append(self._remember(tx).signature)
            if self._log is not None and records:
                record = b"".join(records)
                self._log.write(record)
                os.fsync(self._log.fileno())
                self._offset += len(record)
        return out

    def send_transaction(self, tx: Transaction) -> str:
        """Submit a transaction signed elsewhere (e.g. by oracles one by one). The
        blockhash stays valid until a duplicate needs a new one, so signatures gathered
        over a network round trip still land. A transaction on another blockhash is a
        durable-nonce one (a governance proposal signed over days) or a stale one: a new
        slot begins first, as time would pass on a cluster, so its nonce can advance."""
        with self._mutex, self._locked():
            return self._send(tx)

    def _locked(self) -> _LogLock:
        """The log's exclusive lock, with this replica caught up under it."""
        return _LogLock(self)

    def _execute(
        self, tx: Transaction, own: bool = False
    ) -> TransactionMetadata | FailedTransactionMetadata:
        """Run `tx` on the SVM. `own`: this ledger signed it a moment ago (`transaction`,
        from the keys it was given), so LiteSVM does not check its signatures again, the
        larger part of a packed escrow transaction's cost (about 140 us a signature,
        measured). Everything else is checked as ever (each required signer present, sizes,
        blockhash, duplicates), and every replay of the log (a restart, a sibling process
        catching up, a co-signer's `ChainReader`) verifies every signature it holds. A
        transaction signed elsewhere (`send_transaction`) is always verified."""
        if not (own and self._verify):
            return self.svm.send_transaction(tx)
        self.svm = self.svm.with_sigverify(False)
        try:
            return self.svm.send_transaction(tx)
        finally:
            self.svm = self.svm.with_sigverify(True)

    def _send(self, tx: Transaction, own: bool = False) -> str:
        self._writable()
        if tx.message.recent_blockhash != self.svm.latest_blockhash():
            self.svm.expire_blockhash()
        result = self._execute(tx, own)
        if isinstance(result, FailedTransactionMetadata):
            raise LedgerError(error_code(str(result.err())), result.meta().logs())
        if self._log is not None:
            body = bytes(tx)
            record = _RECORD.pack(len(body), zlib.crc32(body)) + body
            self._log.write(record)
            os.fsync(self._log.fileno())
            self._offset += len(record)
        return self._remember(tx).signature

    def latest_blockhash(self) -> Hash:
        return self.svm.latest_blockhash()

    def blockhash_valid(self, blockhash: Hash) -> bool:
        """Only the current one: the embedded chain keeps no older blockhashes (a restart,
        or a duplicate that needed a new slot, expires it)."""
        return blockhash == self.svm.latest_blockhash()

    def account_data(self, address: Pubkey) -> bytes | None:
        with self._mutex:
            self._catch_up()
            account = self.svm.get_account(address)
        return None if account is None else bytes(account.data)

    def _caught_up(self) -> History:
        with self._mutex:
            self._catch_up()
            return self._history

    def close(self) -> None:
        """Close the log; a send after this raises `ledger_closed` (it would otherwise land
        in this process's memory only, never in the log)."""
        with self._mutex:
            self._closed = True
            if self._log is not None:
                self._log.close()
                self._log = None

    def _writable(self) -> None:
        if self._closed:
            raise LedgerError("ledger_closed", ["the ledger was closed: nothing lands"])


class _LogLock:
    """`flock` on the log for one write, this replica caught up with the log under it."""

    def __init__(self, ledger: EmbeddedLedger) -> None:
        self.ledger = ledger

    def __enter__(self) -> None:
        if self.ledger._log is not None:
            fcntl.flock(self.ledger._log.fileno(), fcntl.LOCK_EX)
        self.ledger._catch_up()

    def __exit__(self, *exc: object) -> None:
        if self.ledger._log is not None:
            fcntl.flock(self.ledger._log.fileno(), fcntl.LOCK_UN)


class ChainReader(Replica):
    """A read-only view of an embedded chain that another process writes.

    Each look replays the records appended since the last one (a torn or half-written tail
    is left for later), so a co-signer reads the same accounts and memos the platform wrote,
    with every signature verified again by its own SVM."""

    def __init__(self, path: Path) -> None:
        self.log_path = path / "chain.log"
        self.svm = LiteSVM().with_blockhash_check(False)
        self._offset = 0
        self._history = History()
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
            self._history.add(tx)
            offset += _RECORD.size + size
        self._offset += offset

    def account_data(self, address: Pubkey) -> bytes | None:
        self.refresh()
        account = self.svm.get_account(address)
        return None if account is None else bytes(account.data)

    def _caught_up(self) -> History:
        self.refresh()
        return self._history
