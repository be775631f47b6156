"""`gridtokenx audit`: replay the chain and the books and prove they agree, or say where not.

Checks, each failure reported with the transaction or row it is about:
1. supply: GRX supply on the chain = minted - burned, replayed instruction by instruction;
2. mints: every GRX mint sits in a transaction whose `gtx1 mint` memo names a batch in the
   books, pays each meter's owner exactly the memo's register range, and each meter's
   ranges follow on from one another (no Wh twice); every batch in the books re-verifies
   (hub signature, each reading's meter signature, Merkle root and ranges);
3. settlement: each epoch's transfers on the chain are exactly the netting of that epoch's
   trades and refunds in the books, under the memo's settlement root;
4. escrow: the escrow accounts hold exactly what the open orders have left in escrow, plus
   the escrow intents (`pending`) whose transfer landed and was not yet refunded;
5. consent and governance: every GRX mint is signed by its batch's hub key, and every
   executed governance proposal (memo `gtx1 governance <id> ...`) is in the audit log.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from solders.pubkey import Pubkey
from spl.token.constants import TOKEN_2022_PROGRAM_ID
from sqlalchemy import Engine

from gridtokenx import auditlog, retention
from gridtokenx.adapters import books
from gridtokenx.ledger import settlement as st
from gridtokenx.ledger.backend import Landed
from gridtokenx.ledger.deployment import Deployment
from gridtokenx.ledger.oracle import MINT, Evidence, parse_ranges, review
from gridtokenx.wire import batch as wire_batch
from gridtokenx.wire.errors import WireError

TRANSFER_CHECKED, MINT_TO_CHECKED, BURN_CHECKED = 12, 14, 15


@dataclass
class Report:
    checked: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def fail(self, where: str, what: str) -> None:
        self.failures.append(f"{where}: {what}")

    def as_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "checked": dict(self.checked), "failures": self.failures}


@dataclass(frozen=True)
class TokenOp:
    kind: int
    mint: Pubkey
    account: Pubkey  # destination (mint, transfer) or source (burn)
    amount: int


def token_ops(entry: Landed) -> list[TokenOp]:
    keys = entry.tx.message.account_keys
    ops = []
    for ix in entry.tx.message.instructions:
        if keys[ix.program_id_index] != TOKEN_2022_PROGRAM_ID:
            continue
        data, accounts = bytes(ix.data), [keys[i] for i in ix.accounts]
        if not data or data[0] not in (TRANSFER_CHECKED, MINT_TO_CHECKED, BURN_CHECKED):
            continue
        amount = int.from_bytes(data[1:9], "little")
        if data[0] == TRANSFER_CHECKED:
            ops.append(TokenOp(data[0], accounts[1], accounts[2], amount))
        elif data[0] == MINT_TO_CHECKED:
            ops.append(TokenOp(data[0], accounts[0], accounts[1], amount))
        else:
            ops.append(TokenOp(data[0], accounts[1], accounts[0], amount))
    return ops


def run(dep: Deployment, engine: Engine, archive_dir: Path | None = None) -> Report:
    """`archive_dir`: where readings retention put the readings it pruned from the books."""
    report = Report()
    history = dep.ledger.history()
    _supply(dep, history, report)
    _mints(dep, engine, history, report, archive_dir)
    _settlements(dep, engine, history, report)
    _escrow(dep, engine, report)
    _governance(engine, history, report)
    return report


def _governance(engine: Engine, history: list[Landed], report: Report) -> None:
    logged = {
        e["detail"].get("transaction")
        for e in auditlog.entries(engine, limit=1 << 30)
        if str(e["action"]).startswith("governance.")
    }
    for entry in history:
        proposals = [t for t in entry.memos if t.split(" ")[:2] == ["gtx1", "governance"]]
        proposals = [t for t in proposals if t.split(" ")[2:3] and t.split(" ")[2].isdigit()]
        if proposals and entry.signature not in logged:
            report.fail(f"tx {entry.signature}", "governance proposal missing from the audit log")
        elif proposals:
            report.checked["governance"] += 1


def _supply(dep: Deployment, history: list[Landed], report: Report) -> None:
    minted = burned = 0
    for entry in history:
        for op in token_ops(entry):
            if op.mint == dep.grx.address:
                minted += op.amount if op.kind == MINT_TO_CHECKED else 0
                burned += op.amount if op.kind == BURN_CHECKED else 0
    report.checked["supply"] += 1
    if dep.grx.supply() != minted - burned:
        report.fail(
            "supply", f"chain supply {dep.grx.supply()} Wh != minted {minted} - burned {burned}"
        )


def _mints(
    dep: Deployment,
    engine: Engine,
    history: list[Landed],
    report: Report,
    archive_dir: Path | None = None,
) -> None:
    meters = {r["meter_id"]: r for r in books.rows(engine, books.meters)}
    owners = {m: Pubkey.from_string(str(r["owner"])) for m, r in meters.items()}
    keys = {m: bytes(r["public_key"]) for m, r in meters.items()}
    batches = {(str(r["hub_id"]), int(r["epoch"])): r for r in books.rows(engine, books.batches)}
    readings: dict[tuple[str, int], list[tuple[bytes, bytes]]] = defaultdict(list)
    for r in books.rows(engine, books.batch_readings, ("hub_id", "epoch", "idx")):
        readings[str(r["hub_id"]), int(r["epoch"])].append((bytes(r["raw"]), bytes(r["signature"])))
    verified: dict[tuple[str, int], wire_batch.BatchHeader] = {}
    for tag, row in batches.items():
        header = wire_batch.decode_header(bytes(row["header"]))
        kept = tuple(readings[tag])
        if not kept:  # pruned by readings retention: the archive has them, with proofs
            if archive_dir is None:
                report.fail(f"batch {tag[0]}/{tag[1]}", "readings pruned; pass --archive-dir")
                continue
            try:
                kept = retention.archived_readings(archive_dir, *tag, bytes(row["header"]))
            except (OSError, WireError) as err:
                report.fail(f"batch {tag[0]}/{tag[1]}", f"archive does not verify ({err})")
                continue
            report.checked["archived_batches"] += 1
        evidence = Evidence(header, bytes(row["hub_signature"]), kept)
        try:
            review(evidence, keys, bytes(row["hub_key"]), {}, {}, [])
        except Exception as err:
            report.fail(f"batch {tag[0]}/{tag[1]}", f"does not re-verify ({err})")
            continue
        if bytes(row["root"]) != header.root:
            report.fail(f"batch {tag[0]}/{tag[1]}", "root column differs from its header")
            continue
        verified[tag] = header
        report.checked["batches"] += 1
    marks: dict[str, int] = {}
    for entry in history:
        grx_mints = [
            op
            for op in token_ops(entry)
            if op.kind == MINT_TO_CHECKED and op.mint == dep.grx.address
        ]
        parsed = [p for p in (parse_ranges(t, MINT) for t in entry.memos) if p is not None]
        if not grx_mints and not parsed:
            continue
        if len(parsed) != 1:
            report.fail(f"tx {entry.signature}", "GRX minted without one mint memo")
            continue
        tag_text, root_hex, ranges = parsed[0]
        hub, _, epoch = tag_text.rpartition("/")
        found = verified.get((hub, int(epoch)))
        if found is None or found.root.hex() != root_hex:
            report.fail(
                f"tx {entry.signature}", f"mint names batch {tag_text} the books cannot verify"
            )
            continue
        message = entry.tx.message
        signers = message.account_keys[: message.header.num_required_signatures]
        hub_key = Pubkey.from_bytes(bytes(batches[hub, int(epoch)]["hub_key"]))
        if grx_mints and hub_key not in signers:
            report.fail(f"tx {entry.signature}", f"minted without the consent of hub {hub}")
            continue
        by_meter = {m.meter_id: m for m in found.ranges}
        minted = [r for r in ranges if r[2] != r[1]]  # zero-length entries only set a mark
        if len(minted) != len(grx_mints):
            report.fail(
                f"tx {entry.signature}", "memo ranges and mint instructions differ in number"
            )
            continue
        amounts = iter(grx_mints)
        for meter, low, high in ranges:
            op = next(amounts) if high != low else None
            where = f"tx {entry.signature} meter {meter}"
            span = by_meter.get(meter)
            owner = owners.get(meter)
            if (
                span is None
                or high != span.export_last_wh
                or low < min(span.export_first_wh, marks.get(meter, low))
            ):
                report.fail(where, f"range {low}-{high} is not in batch {tag_text}")
            elif op is not None and (owner is None or op.account != dep.grx.account_of(owner)):
                report.fail(where, "minted to an account that is not the meter owner's")
            elif op is not None and op.amount != high - low:
                report.fail(where, f"minted {op.amount} Wh for a range of {high - low} Wh")
            elif meter in marks and low != marks[meter]:
                report.fail(
                    where, f"range starts at {low}, the previous mint ended at {marks[meter]}"
                )
            else:
                report.checked["mints"] += 1
            marks[meter] = max(high, marks.get(meter, high))


def _settlements(dep: Deployment, engine: Engine, history: list[Landed], report: Report) -> None:
    by_epoch_trades: dict[int, list[st.Trade]] = defaultdict(list)
    for r in books.rows(engine, books.trades, ("epoch", "trade_id")):
        by_epoch_trades[int(r["epoch"])].append(
            st.Trade(
                str(r["trade_id"]),
                Pubkey.from_string(str(r["buyer"])),
                Pubkey.from_string(str(r["seller"])),
                int(r["wh"]),
                int(r["buyer_paid"]),
                int(r["seller_net"]),
                int(r["fee"]),
                int(r["wheeling"]),
            )
        )
    by_epoch_refunds: dict[int, list[st.Refund]] = defaultdict(list)
    for r in books.rows(engine, books.refunds, ("epoch", "order_id")):
        if r["kind"] != "epoch":
            continue
        by_epoch_refunds[int(r["epoch"])].append(
            st.Refund(
                str(r["order_id"]),
                Pubkey.from_string(str(r["owner"])),
                str(r["asset"]),
                int(r["amount"]),
            )
        )
    onchain: dict[int, Counter[tuple[str, str, int]]] = defaultdict(Counter)
    roots: dict[int, set[str]] = defaultdict(set)
    for entry in history:
        for text in entry.memos:
            if text.startswith(st.SETTLE + " "):
                _, _, epoch_text, root, _part = text.split(" ")
                roots[int(epoch_text)].add(root)
                for op in token_ops(entry):
                    onchain[int(epoch_text)][str(op.mint), str(op.account), op.amount] += 1
    mint_of = {"grx": dep.grx, "thb": dep.thb}
    for epoch in sorted(set(onchain) | set(by_epoch_trades)):
        trades, refunds = by_epoch_trades.get(epoch, []), by_epoch_refunds.get(epoch, [])
        want: Counter[tuple[str, str, int]] = Counter()
        try:
            for t in st.net(dep, trades, refunds):
                mint = mint_of[t.asset]
                want[str(mint.address), str(mint.account_of(t.owner)), t.amount] += 1
        except st.SettlementError as err:
            report.fail(f"epoch {epoch}", f"books do not balance ({err})")
            continue
        root = st.settlement_root(trades, refunds).hex()
        if want != onchain.get(epoch, Counter()) or roots.get(epoch, {root}) != {root}:
            missing = want - onchain.get(epoch, Counter())
            extra = onchain.get(epoch, Counter()) - want
            report.fail(
                f"epoch {epoch}",
                f"settlement differs from the cleared trades: {sum(extra.values())} transfers "
                f"not traced to a trade, {sum(missing.values())} trades' transfers missing",
            )
        else:
            report.checked["settlements"] += 1


def _escrow(dep: Deployment, engine: Engine, report: Report) -> None:
    held = {"grx": 0, "thb": 0}
    paid = books.released(engine)
    index = dep.ledger.memo_index()
    for r in books.rows(engine, books.orders):
        if r["status"] == "pending":  # an escrow intent a crash cut short (not yet swept)
            tail = f"{r['order_id']} {r['asset']} {r['escrowed']}"
            landed = f"{st.ESCROW} {tail}" in index and f"{st.REFUND} {tail}" not in index
            held[str(r["asset"])] += int(r["escrowed"]) if landed else 0
            continue
        left = int(r["escrowed"]) - paid.get(str(r["order_id"]), 0)
        if r["status"] != "open" and left != 0:
            report.fail(f"order {r['order_id']}", f"closed with {left} left in escrow")
        held[str(r["asset"])] += left
    escrow = dep.escrow.pubkey()
    for asset, mint in (("grx", dep.grx), ("thb", dep.thb)):
        report.checked["escrow"] += 1
        if mint.balance(escrow) != held[asset]:
            report.fail(
                f"escrow {asset}",
                f"escrow holds {mint.balance(escrow)}, open orders have {held[asset]} left",
            )
