"""The ledger side of a statement: what its transactions moved, and the check that the
chain holds them with the statement's amounts (`gridtokenx verify --data DIR | --rpc URL`).

A ledger is read through the read-only `ChainView` (the embedded chain's log replayed by
`ChainReader`, or an RPC node), never through the platform's services.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Collection, Mapping
from typing import Any

from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solders.signature import Signature
from solders.transaction import Transaction
from spl.token.constants import TOKEN_2022_PROGRAM_ID

from gridtokenx.ledger.backend import ChainView, Landed, memos_of
from gridtokenx.statement.verify import Failure
from gridtokenx.wire import batch as wire_batch

TRANSFER_CHECKED, MINT_TO_CHECKED, BURN_CHECKED = 12, 14, 15
# the token account an instruction credits or debits, by its place in the accounts
_ACCOUNT_AT = {TRANSFER_CHECKED: 2, MINT_TO_CHECKED: 1, BURN_CHECKED: 0}


def moved(entry: Landed, kind: int, account: str) -> int:
    """The token amount this transaction's `kind` instructions move to (or, for a burn, from)
    `account`: Token-2022 checked instructions carry it as u64 LE after their type byte."""
    message = entry.tx.message
    keys = message.account_keys
    total = 0
    for ix in message.instructions:
        data = bytes(ix.data)
        if keys[ix.program_id_index] != TOKEN_2022_PROGRAM_ID or len(data) < 9 or data[0] != kind:
            continue
        at = _ACCOUNT_AT[kind]
        if at < len(ix.accounts) and str(keys[ix.accounts[at]]) == account:
            total += struct.unpack_from("<Q", data, 1)[0]
    return total


Fetch = Callable[[Collection[str]], dict[str, Landed]]  # signatures -> those that landed


def from_chain(chain: ChainView) -> Fetch:
    """Look transactions up in a chain's history (the embedded chain's log)."""

    def fetch(signatures: Collection[str]) -> dict[str, Landed]:
        found = {s: chain.landed(s) for s in set(signatures)}
        return {s: e for s, e in found.items() if e is not None}

    return fetch


def from_rpc(url: str, timeout: float = 30) -> Fetch:
    """Look transactions up one by one on an RPC node (`getTransaction`); one that failed
    or is unknown is missing."""

    def fetch(signatures: Collection[str]) -> dict[str, Landed]:
        async def run() -> dict[str, Landed]:
            out: dict[str, Landed] = {}
            async with AsyncClient(url, commitment=Confirmed, timeout=timeout) as client:
                for text in sorted(set(signatures)):
                    try:
                        signature = Signature.from_string(text)
                    except ValueError:
                        continue
                    found = (await client.get_transaction(signature, encoding="base64")).value
                    if found is None:
                        continue
                    meta = found.transaction.meta
                    if meta is not None and meta.err is not None:
                        continue
                    tx = Transaction.from_bytes(bytes(found.transaction.transaction))
                    out[text] = Landed(text, tx, memos_of(tx))
            return out

        return asyncio.run(run())

    return fetch


def check(doc: Mapping[str, Any], fetch: Fetch) -> list[Failure]:
    """The statement's transactions landed, with its memos and amounts."""
    failures: list[Failure] = []
    grx, thb = str(doc["grx_account"]), str(doc["thb_account"])
    epochs = doc["epochs"]
    wanted = [x["transaction"] for e in epochs for x in [*e["mints"], *e["burns"]]]
    wanted += [sig for e in epochs for sig in e.get("settlement", {}).get("transactions", [])]
    wanted += [b["record"] for b in doc["batches"].values()]
    landed = fetch(wanted)

    def fail(code: str, item: str, message: str) -> None:
        failures.append(Failure(code, item, message))

    for tag, b in doc["batches"].items():
        root = wire_batch.decode_header(bytes.fromhex(b["header"])).root.hex()
        record = landed.get(b["record"])
        if record is None:
            fail("ledger_missing", f"batch {tag}", f"its record {b['record']} is not found")
        elif not any(text.startswith(f"gtx1 batch {tag} {root} ") for text in record.memos):
            fail("ledger_mismatch", f"batch {tag}", "its record names another root")
    for e in epochs:
        where = f"epoch {e['epoch']}"
        minted: dict[str, int] = {}
        for m in e["mints"]:
            item = f"{where} mint {m['meter_id']}:{m['from_wh']}-{m['to_wh']}"
            entry = landed.get(m["transaction"])
            if entry is None:
                fail("ledger_missing", item, f"transaction {m['transaction']} is not on the chain")
            elif m["memo"] not in entry.memos:
                fail("ledger_mismatch", item, "the transaction does not carry the memo")
            else:
                minted[entry.signature] = minted.get(entry.signature, 0) + m["wh"]
        for sig, wh in minted.items():
            got = moved(landed[sig], MINT_TO_CHECKED, grx)
            if got != wh:
                fail("ledger_mismatch", f"{where} mint {sig}", f"the chain minted {got} Wh")
        for b in e["burns"]:
            item = f"{where} burn {b['meter_id']}:{b['from_wh']}-{b['to_wh']}"
            entry = landed.get(b["transaction"])
            if entry is None:
                fail("ledger_missing", item, f"transaction {b['transaction']} is not on the chain")
            elif b["memo"] not in entry.memos:
                fail("ledger_mismatch", item, "the transaction does not carry the memo")
            elif (got := moved(entry, BURN_CHECKED, grx)) != b["wh"]:
                fail("ledger_mismatch", item, f"the chain burned {got} Wh")
        settlement = e.get("settlement")
        if not settlement:
            continue
        prefix = f"gtx1 settle {e['epoch']} {settlement['root']} "
        grx_in = thb_in = 0
        parts: set[str] = set()
        for sig in settlement["transactions"]:
            entry = landed.get(sig)
            if entry is None:
                fail("ledger_missing", f"{where} settlement", f"transaction {sig} is not found")
                continue
            part = [t.removeprefix(prefix) for t in entry.memos if t.startswith(prefix)]
            if not part:
                fail("ledger_mismatch", f"{where} settlement", f"{sig} settles another root")
                continue
            parts.add(part[0])
            grx_in += moved(entry, TRANSFER_CHECKED, grx)
            thb_in += moved(entry, TRANSFER_CHECKED, thb)
        n = len(settlement["transactions"])
        if parts and parts != {f"{k}/{n}" for k in range(1, n + 1)}:
            fail("ledger_mismatch", f"{where} settlement", f"not all {n} parts: {sorted(parts)}")
        refunded = {"grx": 0, "thb": 0}
        for r in e["refunds"]:
            refunded[r["asset"]] = refunded.get(r["asset"], 0) + r["amount"]
        if grx_in != e["bought_wh"] + refunded["grx"]:
            fail("ledger_mismatch", f"{where} settlement", f"the chain paid {grx_in} Wh of GRX")
        if thb_in != e["received_uthb"] + refunded["thb"]:
            fail("ledger_mismatch", f"{where} settlement", f"the chain paid {thb_in} uTHB")
    return failures
