"""A thin Solana JSON-RPC server over LiteSVM, for testing the cluster backend's requests
and responses without a validator (what it fakes: the network and consensus, nothing of
the runtime: transactions execute on the same SVM as the embedded ledger)."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from solders.litesvm import LiteSVM
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import Transaction
from solders.transaction_metadata import FailedTransactionMetadata

from gridtokenx.ledger.backend import memos_of


class RpcServer:
    def __init__(self) -> None:
        self.svm = LiteSVM()
        self.lock = threading.Lock()
        self.slot = 1
        self.txs: list[tuple[Transaction, int]] = []  # landed, with their slot
        self.requests: list[str] = []
        # while cleared, confirmations wait (outside the lock: other calls are answered)
        self.confirming = threading.Event()
        self.confirming.set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                calls = body if isinstance(body, list) else [body]
                answers = [server.handle(c) for c in calls]
                data = json.dumps(answers if isinstance(body, list) else answers[0]).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()

    def ctx(self, value: Any) -> dict[str, Any]:
        return {"context": {"slot": self.slot}, "value": value}

    def handle(self, call: dict[str, Any]) -> dict[str, Any]:
        method, params = call["method"], call.get("params", [])
        self.requests.append(method)
        if method == "getSignatureStatuses":
            self.confirming.wait(timeout=60)
        with self.lock:
            try:
                result = getattr(self, method)(*params)
            except RpcFailure as err:  # as a validator's preflight failure looks
                data = {
                    "err": None,
                    "logs": err.logs,
                    "accounts": None,
                    "unitsConsumed": 0,
                    "returnData": None,
                }
                error = {"code": -32002, "message": str(err), "data": data}
                return {"jsonrpc": "2.0", "id": call["id"], "error": error}
        return {"jsonrpc": "2.0", "id": call["id"], "result": result}

    def getLatestBlockhash(self, *_: Any) -> Any:
        return self.ctx(
            {"blockhash": str(self.svm.latest_blockhash()), "lastValidBlockHeight": self.slot + 150}
        )

    def isBlockhashValid(self, blockhash: str, *_: Any) -> Any:
        return self.ctx(blockhash == str(self.svm.latest_blockhash()))

    def getMinimumBalanceForRentExemption(self, size: int, *_: Any) -> Any:
        return self.svm.minimum_balance_for_rent_exemption(size)

    def sendTransaction(self, data: str, *_: Any) -> Any:
        tx = Transaction.from_bytes(base64.b64decode(data))
        result = self.svm.send_transaction(tx)
        if isinstance(result, FailedTransactionMetadata):
            raise RpcFailure(f"Transaction simulation failed: {result.err()}", result.meta().logs())
        self.svm.expire_blockhash()
        self.slot += 1
        self.txs.append((tx, self.slot))
        return str(tx.signatures[0])

    def getSignatureStatuses(self, sigs: list[str], *_: Any) -> Any:
        landed = {str(tx.signatures[0]): slot for tx, slot in self.txs}
        return self.ctx(
            [
                {
                    "slot": landed[s],
                    "confirmations": None,
                    "err": None,
                    "status": {"Ok": None},
                    "confirmationStatus": "finalized",
                }
                if s in landed
                else None
                for s in sigs
            ]
        )

    def getAccountInfo(self, address: str, *_: Any) -> Any:
        account = self.svm.get_account(Pubkey.from_string(address))
        if account is None or account.lamports == 0:
            return self.ctx(None)
        return self.ctx(
            {
                "data": [base64.b64encode(bytes(account.data)).decode(), "base64"],
                "executable": account.executable,
                "lamports": account.lamports,
                "owner": str(account.owner),
                "rentEpoch": 0,
                "space": len(bytes(account.data)),
            }
        )

    def getSignaturesForAddress(self, address: str, options: dict[str, Any] | None = None) -> Any:
        options = options or {}
        key = Pubkey.from_string(address)
        newest_first = [
            (tx, slot) for tx, slot in reversed(self.txs) if key in tx.message.account_keys
        ]
        sigs = [str(tx.signatures[0]) for tx, _ in newest_first]
        if options.get("before") in sigs:
            newest_first = newest_first[sigs.index(options["before"]) + 1 :]
            sigs = sigs[sigs.index(options["before"]) + 1 :]
        if options.get("until") in sigs:
            newest_first = newest_first[: sigs.index(options["until"])]
        newest_first = newest_first[: options.get("limit", 1000)]
        return [
            {
                "signature": str(tx.signatures[0]),
                "slot": slot,
                "err": None,
                "memo": "; ".join(memos_of(tx)) or None,
                "blockTime": None,
                "confirmationStatus": "finalized",
            }
            for tx, slot in newest_first
        ]

    def getTransaction(self, sig: str, *_: Any) -> Any:
        for tx, slot in self.txs:
            if tx.signatures[0] == Signature.from_string(sig):
                return {
                    "slot": slot,
                    "blockTime": None,
                    "meta": None,
                    "transaction": [base64.b64encode(bytes(tx)).decode(), "base64"],
                }
        return None


class RpcFailure(Exception):
    def __init__(self, message: str, logs: list[str]) -> None:
        super().__init__(message)
        self.logs = logs
