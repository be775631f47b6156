"""Make a household's statement (docs/statement.md) from the platform's books and ledger:
per epoch its meters' signed readings with their batch proofs, its mints and burns, its
trades and refunds with their settlement proofs, and the transactions of each.

Every amount is taken from the platform's records (the books' trades, the chain's mint and
burn memos and instructions), not recomputed here: recomputing is the verifier's job.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from solders.pubkey import Pubkey
from spl.token.constants import TOKEN_2022_PROGRAM_ID
from spl.token.instructions import get_associated_token_address
from sqlalchemy import Engine, or_, select

from gridtokenx.adapters import books, queries, tables
from gridtokenx.errors import InvalidInput, NotFound
from gridtokenx.ledger.backend import ChainView
from gridtokenx.ledger.oracle import BATCH, MINT, parse_ranges
from gridtokenx.ledger.settlement import BURN
from gridtokenx.statement.chain import BURN_CHECKED, moved
from gridtokenx.statement.verify import FORMAT
from gridtokenx.wire import batch as wire_batch
from gridtokenx.wire import merkle
from gridtokenx.wire.reading import decode, signed_bytes

MAX_DAYS = 93  # a quarter: what one statement covers at most (its cost follows its period)


def epochs_of(first: str, last: str, epoch_s: float) -> tuple[int, int]:
    """The epochs from the start of day `first` to the end of day `last` (UTC dates)."""
    try:
        start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    except ValueError:
        raise InvalidInput("invalid_date", "dates are YYYY-MM-DD") from None
    if end < start:
        raise InvalidInput("invalid_period", "the period ends before it starts")
    if (end - start).days >= MAX_DAYS:
        raise InvalidInput("period_too_long", f"a statement covers at most {MAX_DAYS} days")
    t0 = dt.datetime.combine(start, dt.time(), dt.UTC).timestamp()
    t1 = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), dt.UTC).timestamp()
    return int(t0 // epoch_s), int(t1 // epoch_s) - 1


def _proved(c: Any, tag: tuple[str, int], cache: dict[tuple[str, int], Any]) -> Any:
    """A batch's header row and its readings in tree order (the leaves' (meter, seq))."""
    if tag not in cache:
        b, r = books.batches, books.batch_readings
        batch = c.execute(
            select(b.c.header, b.c.hub_signature, b.c.hub_key).where(
                b.c.hub_id == tag[0], b.c.epoch == tag[1]
            )
        ).one()
        raws = c.execute(select(r.c.raw).where(r.c.hub_id == tag[0], r.c.epoch == tag[1])).scalars()
        ordered = wire_batch.order_leaves([bytes(x) for x in raws])
        leaves = [signed_bytes(raw) for _, raw in ordered]
        where = {(x.meter_id, x.seq): k for k, (x, _) in enumerate(ordered)}
        cache[tag] = (batch, leaves, where)
    return cache[tag]


def _reading_item(c: Any, row: Any, cache: dict[tuple[str, int], Any]) -> dict[str, Any]:
    _, leaves, where = _proved(c, (row.hub_id, int(row.epoch)), cache)
    index = where[(row.meter_id, int(row.seq))]
    return {
        "batch": f"{row.hub_id}/{row.epoch}",
        "raw": bytes(row.raw).hex(),
        "signature": bytes(row.signature).hex(),
        "index": index,
        "path": [h.hex() for h in merkle.proof(leaves, index)],
    }


def build(
    engine: Engine,
    chain: ChainView,
    mints: tuple[str, str],
    user_id: str,
    first: str,
    last: str,
    epoch_s: float = 900.0,
) -> dict[str, Any]:
    """The statement of `user_id` for the UTC days `first` to `last`; `mints` are the GRX
    and THB mint addresses (the wallet's token accounts are derived from them)."""
    lo, hi = epochs_of(first, last, epoch_s)
    with engine.connect() as c:
        wallet = c.execute(
            select(tables.users.c.wallet).where(tables.users.c.user_id == user_id)
        ).scalar()
    if wallet is None:
        raise NotFound("unknown_user", user_id)
    accounts = {
        f"{asset}_account": str(
            get_associated_token_address(
                Pubkey.from_string(wallet), Pubkey.from_string(mint), TOKEN_2022_PROGRAM_ID
            )
        )
        for asset, mint in zip(("grx", "thb"), mints, strict=True)
    }
    m, r = books.meters, books.batch_readings
    cache: dict[tuple[str, int], Any] = {}
    epochs: dict[int, dict[str, Any]] = {}

    def epoch(e: int) -> dict[str, Any]:
        if e not in epochs:
            epochs[e] = {
                "epoch": e,
                "starts_at": e * epoch_s,
                "readings": [],
                "mints": [],
                "burns": [],
                "trades": [],
                "refunds": [],
            }
        return epochs[e]

    columns = (r.c.hub_id, r.c.epoch, r.c.raw, r.c.signature, r.c.meter_id, r.c.seq)
    with engine.connect() as c:
        meters = {
            str(row.meter_id): bytes(row.public_key).hex()
            for row in c.execute(select(m.c.meter_id, m.c.public_key).where(m.c.owner == wallet))
        }
        opening: dict[str, Any] = {}
        for meter_id in sorted(meters):
            before = c.execute(
                select(*columns)
                .where(r.c.meter_id == meter_id, r.c.epoch < lo)
                .order_by(r.c.epoch.desc(), r.c.seq.desc())
                .limit(1)
            ).first()
            if before is not None:
                opening[meter_id] = _reading_item(c, before, cache)
            for row in c.execute(
                select(*columns)
                .where(r.c.meter_id == meter_id, r.c.epoch >= lo, r.c.epoch <= hi)
                .order_by(r.c.epoch, r.c.seq)
            ):
                epoch(int(row.epoch))["readings"].append(_reading_item(c, row, cache))
        t = books.trades
        trades = c.execute(
            select(t)
            .where(or_(t.c.buyer == wallet, t.c.seller == wallet), t.c.epoch.between(lo, hi))
            .order_by(t.c.epoch, t.c.trade_id)
        ).all()
        f = books.refunds
        refunds = c.execute(
            select(f).where(f.c.owner == wallet, f.c.kind == "epoch", f.c.epoch.between(lo, hi))
        ).all()
        settled_epochs = {int(x.epoch) for x in [*trades, *refunds]}
        trees: dict[int, tuple[list[bytes], dict[str, int]]] = {}
        for e in sorted(settled_epochs):  # the epoch's settlement tree, as settlement built it
            leaves: list[bytes] = []
            where: dict[str, int] = {}
            for x in c.execute(select(t).where(t.c.epoch == e).order_by(t.c.trade_id)):
                where[f"trade {x.trade_id}"] = len(leaves)
                leaves.append(_trade_leaf(x))
            for x in c.execute(
                select(f).where(f.c.epoch == e, f.c.kind == "epoch").order_by(f.c.order_id)
            ):
                where[f"refund {x.order_id}"] = len(leaves)
                leaves.append(f"refund|{x.order_id}|{x.owner}|{x.asset}|{x.amount}".encode())
            trees[e] = (leaves, where)
    for x in trades:
        leaves, where = trees[int(x.epoch)]
        index = where[f"trade {x.trade_id}"]
        epoch(int(x.epoch))["trades"].append(
            {
                "trade_id": str(x.trade_id),
                "side": "buy" if x.buyer == wallet else "sell",
                "buyer": str(x.buyer),
                "seller": str(x.seller),
                "wh": int(x.wh),
                "price": x.price,
                "wheeling_rate": x.wheeling_rate,
                "fee_bps": x.fee_bps,
                "energy_value": int(x.buyer_paid) - int(x.wheeling),
                "fee": int(x.fee),
                "wheeling": int(x.wheeling),
                "buyer_paid": int(x.buyer_paid),
                "seller_net": int(x.seller_net),
                "index": index,
                "path": [h.hex() for h in merkle.proof(leaves, index)],
            }
        )
    for x in sorted(refunds, key=lambda x: str(x.order_id)):
        leaves, where = trees[int(x.epoch)]
        index = where[f"refund {x.order_id}"]
        epoch(int(x.epoch))["refunds"].append(
            {
                "order_id": str(x.order_id),
                "asset": str(x.asset),
                "amount": int(x.amount),
                "index": index,
                "path": [h.hex() for h in merkle.proof(leaves, index)],
            }
        )
    settlements = queries.settlement_transactions(engine, set(trees))
    for e, (leaves, _) in trees.items():
        epoch(e)["settlement"] = {
            "root": merkle.root(leaves).hex(),
            "size": len(leaves),
            "transactions": settlements.get(e, []),
        }
    _chain_items(chain, epochs, meters, cache, accounts["grx_account"], epoch)
    for entry in epochs.values():
        _amounts(entry)
    _carry(epochs, opening)
    hubs: dict[str, str] = {}
    batches: dict[str, Any] = {}
    memos = chain.memo_index()
    for (hub_id, e), (batch, _, _) in sorted(cache.items()):
        hubs[hub_id] = bytes(batch.hub_key).hex()
        tag = f"{hub_id}/{e}"
        header = wire_batch.decode_header(bytes(batch.header))
        prefix = f"{BATCH} {tag} {header.root.hex()} "
        batches[tag] = {
            "header": bytes(batch.header).hex(),
            "hub_signature": bytes(batch.hub_signature).hex(),
            # the transaction recording the batch on the chain (its hub signs the memo)
            "record": next((sig for text, sig in memos.items() if text.startswith(prefix)), ""),
        }
    return {
        "format": FORMAT,
        "user_id": user_id,
        "wallet": wallet,
        **accounts,
        "period": {"from": first, "to": last, "epoch_s": epoch_s, "epochs": [lo, hi]},
        "meters": meters,
        "hubs": hubs,
        "batches": batches,
        "opening": opening,
        "epochs": [epochs[e] for e in sorted(epochs)],
    }


def _trade_leaf(x: Any) -> bytes:
    return (
        f"trade|{x.trade_id}|{x.buyer}|{x.seller}|{x.wh}|{x.buyer_paid}|"
        f"{x.seller_net}|{x.fee}|{x.wheeling}"
    ).encode()


def _chain_items(
    chain: ChainView,
    epochs: dict[int, dict[str, Any]],
    meters: Mapping[str, str],
    cache: Mapping[tuple[str, int], Any],
    grx_account: str,
    epoch: Any,
) -> None:
    """The mints of the statement's batches and the burns of its epochs, from their memos
    on the chain (a burn's amount from its instruction: it depends on the balance)."""
    tags = {f"{hub_id}/{e}": e for hub_id, e in cache if e in epochs}
    wanted = [f"{MINT} {tag}" for tag in tags] + [f"{BURN} {e}" for e in epochs]
    for entry in chain.tagged(wanted):  # by the memos' index, not a pass over the chain
        for text in entry.memos:
            parsed = parse_ranges(text, MINT)
            if parsed is not None and parsed[0] in tags:
                for meter_id, low, high in parsed[2]:
                    if meter_id in meters:
                        epoch(tags[parsed[0]])["mints"].append(
                            {
                                "meter_id": meter_id,
                                "from_wh": low,
                                "to_wh": high,
                                "wh": high - low,
                                "memo": text,
                                "transaction": entry.signature,
                            }
                        )
            parsed = parse_ranges(text, BURN)
            if parsed is not None and parsed[0].isdigit() and int(parsed[0]) in epochs:
                for meter_id, low, high in parsed[2]:
                    if meter_id in meters:
                        epoch(int(parsed[0]))["burns"].append(
                            {
                                "meter_id": meter_id,
                                "from_wh": low,
                                "to_wh": high,
                                "wh": moved(entry, BURN_CHECKED, grx_account),
                                "memo": text,
                                "transaction": entry.signature,
                            }
                        )


def _amounts(e: dict[str, Any]) -> None:
    """The epoch's totals as the platform recorded them."""
    buys = [t for t in e["trades"] if t["side"] == "buy"]
    sells = [t for t in e["trades"] if t["side"] == "sell"]
    e["minted_wh"] = sum(x["wh"] for x in e["mints"])
    e["burned_wh"] = sum(x["wh"] for x in e["burns"])
    e["bought_wh"] = sum(t["wh"] for t in buys)
    e["sold_wh"] = sum(t["wh"] for t in sells)
    e["paid_uthb"] = sum(t["buyer_paid"] for t in buys)
    e["received_uthb"] = sum(t["seller_net"] for t in sells)


def _carry(epochs: dict[int, dict[str, Any]], opening: Mapping[str, Any]) -> None:
    """Each epoch's export and import: its meters' newest registers minus those before it
    (the previous epoch's, the opening reading's, or the batch's first)."""
    base: dict[str, tuple[int, int]] = {}
    for meter_id, item in opening.items():
        x = decode(bytes.fromhex(item["raw"]))
        base[meter_id] = (x.import_wh, x.export_wh)
    for e in sorted(epochs):
        readings = [decode(bytes.fromhex(x["raw"])) for x in epochs[e]["readings"]]
        export = imported = 0
        for meter_id in sorted({x.meter_id for x in readings}):
            mine = sorted((x for x in readings if x.meter_id == meter_id), key=lambda x: x.seq)
            first = base.get(meter_id, (mine[0].import_wh, mine[0].export_wh))
            imported += mine[-1].import_wh - first[0]
            export += mine[-1].export_wh - first[1]
            base[meter_id] = (mine[-1].import_wh, mine[-1].export_wh)
        epochs[e]["export_wh"] = export
        epochs[e]["import_wh"] = imported
