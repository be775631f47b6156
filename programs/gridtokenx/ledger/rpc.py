"""The cluster backend: the same `Ledger` over JSON-RPC (solana-py), for
solana-test-validator, devnet or mainnet (`SOLANA_RPC_URL`).

Retries are safe for the same reason as on the embedded ledger: every GridTokenX
transaction carries a memo that names what it does, and `memo_index` reads those memos
back from the cluster (getSignaturesForAddress of the payer, which signs every one).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solana.rpc.core import RPCException
from solana.rpc.models import TxOpts
from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.rpc.requests import IsBlockhashValid
from solders.rpc.responses import IsBlockhashValidResp
from solders.signature import Signature
from solders.transaction import Transaction

from gridtokenx.ledger.backend import History, LedgerError, Replica, error_code, transaction

T = TypeVar("T")


class RpcLedger(Replica):
    def __init__(self, url: str, payer: Keypair, timeout: float = 30) -> None:
        # solana-py 0.40 is async only: its calls run on a loop in a thread of its own, so
        # the platform's threads (requests, the group commit, the epoch clock) each wait
        # for their own call only, a read never for another thread's send to confirm
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="solana-rpc", daemon=True
        )
        self._thread.start()
        self.client = AsyncClient(url, commitment=Confirmed, timeout=timeout, http2=False)
        self._payer = payer
        self._history = History()
        self._newest: Signature | None = None
        self._sending = threading.RLock()  # a send is one step: blockhash, send, confirm
        self._syncing = threading.Lock()  # a history fetch too (else two add one page)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def close(self) -> None:
        with self._sending, self._syncing:
            self._run(self.client.close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

    @property
    def payer(self) -> Keypair:
        return self._payer

    def rent(self, size: int) -> int:
        return int(self._run(self.client.get_minimum_balance_for_rent_exemption(size)).value)

    def latest_blockhash(self) -> Hash:
        return self._run(self.client.get_latest_blockhash()).value.blockhash

    def blockhash_valid(self, blockhash: Hash) -> bool:
        # solana-py 0.40 has no wrapper for isBlockhashValid: the request and answer types
        # are solders', sent the way the client sends every call
        body = IsBlockhashValid(blockhash)
        answer = self._run(self.client._provider.make_request(body, IsBlockhashValidResp))
        return bool(answer.value)

    def send(self, instructions: Sequence[Instruction], signers: Sequence[Keypair]) -> str:
        with self._sending:  # the blockhash it was signed on is the one it is sent with
            return self.send_transaction(
                transaction(instructions, self._payer, signers, self.latest_blockhash())
            )

    def send_many(
        self, transactions: Sequence[tuple[Sequence[Instruction], Sequence[Keypair]]]
    ) -> list[str | LedgerError]:
        """Each transaction in turn, each confirmed: its signature or its `LedgerError`."""
        out: list[str | LedgerError] = []
        for instructions, signers in transactions:
            try:
                out.append(self.send(instructions, signers))
            except LedgerError as err:
                out.append(err)
        return out

    def send_transaction(self, tx: Transaction) -> str:
        with self._sending:
            try:
                self._run(
                    self.client.send_raw_transaction(
                        bytes(tx),
                        opts=TxOpts(skip_confirmation=False, preflight_commitment=Confirmed),
                    )
                )
            except RPCException as err:
                raise LedgerError(error_code(str(err)), [str(err)]) from None
            self._sync()
            return str(tx.signatures[0])

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

    def account_data(self, address: Pubkey) -> bytes | None:
        value = self._run(self.client.get_account_info(address, encoding="base64")).value
        return None if value is None else bytes(value.data)

    def _sync(self) -> None:
        with self._syncing:
            self._fetch_newer()

    def _fetch_newer(self) -> None:
        """Fetch the payer's transactions newer than the last seen, oldest first."""
        newer: list[Signature] = []
        before = None
        while True:
            page = self._run(
                self.client.get_signatures_for_address(
                    self._payer.pubkey(), before=before, until=self._newest, limit=1000
                )
            ).value
            newer.extend(s.signature for s in page if s.err is None)
            if len(page) < 1000:
                break
            before = page[-1].signature
        for signature in reversed(newer):
            found = self._run(self.client.get_transaction(signature, encoding="base64")).value
            if found is None:
                raise LedgerError("history_gap", [str(signature)])
            tx = Transaction.from_bytes(bytes(found.transaction.transaction))
            self._history.add(tx, str(signature))
        if newer:
            self._newest = newer[0]

    def _caught_up(self) -> History:
        self._sync()
        return self._history
