"""The researcher-facing order file (CSV in) and clearing report (JSON out).

CSV columns: id,owner,side,quantity_kwh,price_thb_per_kwh,zone (zone may be omitted,
then "default"), optionally tif (gfe|ioc|fok). Numbers are decimal text; quantities
have at most 3 decimals (Wh), prices at most 6 (uTHB). Rows enter the market in file
order, which is their submission sequence.

A malformed file (bad header, a row that does not parse, a repeated id) clears nothing and
names every bad line. A well-formed row the market refuses (self-trade, price or quantity
out of bounds, open-order limit, unknown zone, a halted market) is listed under
`rejected` and the rest of the book is cleared.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

from gridtokenx.market.config import MarketConfig
from gridtokenx.market.engine import EpochOutcome, Market
from gridtokenx.market.errors import OrderRejected
from gridtokenx.market.orders import Order, Side, TimeInForce
from gridtokenx.units import UnitError, kwh, price_from_thb_per_kwh, thb, wh_from_kwh

REQUIRED = ("id", "owner", "side", "quantity_kwh", "price_thb_per_kwh")


@dataclass(frozen=True)
class LineError:
    """A malformed row (or header): the file is wrong and nothing is cleared."""

    line: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.code}: {self.message}"


@dataclass(frozen=True)
class Rejection:
    """A well-formed row the market refused (self-trade, bounds, limits, halt): that
    order's business, listed in the report while the rest of the book is cleared."""

    line: int
    id: str
    code: str
    message: str

    def as_json(self) -> dict[str, Any]:
        return {"line": self.line, "id": self.id, "code": self.code, "message": self.message}


@dataclass(frozen=True)
class ClearedFile:
    """What `clear_file` did: the epoch's outcome (None when the file is malformed),
    the market's refusals, and the malformed rows."""

    outcome: EpochOutcome | None
    rejected: list[Rejection]
    errors: list[LineError]


def _order(row: dict[str, str | None]) -> Order:
    def text(name: str) -> str:
        value = row.get(name)
        if value is None or not value.strip():
            raise UnitError(f"missing_{name}", f"{name} is empty")
        return value.strip()

    try:
        side = Side(text("side").lower())
    except ValueError:
        raise UnitError("invalid_side", "side must be buy or sell") from None
    tif_text = (row.get("tif") or "gfe").strip().lower()
    try:
        tif = TimeInForce(tif_text)
    except ValueError:
        raise UnitError("invalid_tif", "tif must be gfe, ioc or fok") from None
    return Order(
        id=text("id"),
        owner=text("owner"),
        side=side,
        quantity_wh=wh_from_kwh(text("quantity_kwh")),
        price=price_from_thb_per_kwh(text("price_thb_per_kwh")),
        zone=(row.get("zone") or "default").strip() or "default",
        tif=tif,
    )


def parse(text: str) -> tuple[list[tuple[int, Order]], list[LineError]]:
    """Every row as (line, order), and every malformed row. Ids must be unique in the
    file: a report names orders by id."""
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        return [], [LineError(1, "missing_columns", f"header lacks {', '.join(missing)}")]
    reader.fieldnames = header
    rows: list[tuple[int, Order]] = []
    errors: list[LineError] = []
    first_line: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        if None in row:
            errors.append(LineError(line, "extra_fields", "more fields than the header"))
            continue
        try:
            order = _order(row)
        except UnitError as exc:
            errors.append(LineError(line, exc.code, str(exc)))
            continue
        if order.id in first_line:
            message = f"id {order.id!r} is already used on line {first_line[order.id]}"
            errors.append(LineError(line, "duplicate_order_id", message))
            continue
        first_line[order.id] = line
        rows.append((line, order))
    return rows, errors


def clear_file(text: str, config: MarketConfig) -> ClearedFile:
    """Clear the orders of a file as one epoch. A malformed file clears nothing; a row
    the market refuses is listed and the others are cleared."""
    rows, errors = parse(text)
    if not errors and not rows:
        errors = [LineError(1, "no_orders", "the file has no orders")]
    if errors:
        return ClearedFile(None, [], errors)
    market = Market(config)
    rejected: list[Rejection] = []
    for line, order in rows:
        try:
            market.place(order)
        except OrderRejected as exc:
            rejected.append(Rejection(line, order.id, exc.code, exc.message))
    return ClearedFile(market.clear_epoch(), rejected, [])


def report(
    outcome: EpochOutcome, fee_bps: int, rejected: list[Rejection] | None = None
) -> dict[str, Any]:
    """The JSON report: display numbers in THB/kWh, plus exact integer units (_wh, _uthb),
    and the rows the market refused."""
    price = outcome.clearing_price
    trades = [
        {
            "buy_id": t.buy_id,
            "sell_id": t.sell_id,
            "buyer_zone": t.buyer_zone,
            "seller_zone": t.seller_zone,
            "quantity_kwh": kwh(t.quantity_wh),
            "price_thb_per_kwh": thb(t.price),
            "wheeling_thb_per_kwh": thb(t.wheeling_rate),
            "energy_value_thb": thb(t.receipt.energy_value),
            "fee_thb": thb(t.receipt.fee),
            "wheeling_thb": thb(t.receipt.wheeling),
            "buyer_paid_thb": thb(t.receipt.buyer_paid),
            "net_to_seller_thb": thb(t.receipt.net_to_seller),
            "quantity_wh": t.quantity_wh,
            "price_uthb_per_kwh": t.price,
            "buyer_paid_uthb": t.receipt.buyer_paid,
            "net_to_seller_uthb": t.receipt.net_to_seller,
            "fee_uthb": t.receipt.fee,
            "wheeling_uthb": t.receipt.wheeling,
        }
        for t in outcome.trades
    ]
    return {
        "mechanism": outcome.mechanism.value,
        "fee_bps": fee_bps,
        "clearing_price_thb_per_kwh": None if price is None else thb(price),
        "zone_prices_thb_per_kwh": {z: thb(p) for z, p in outcome.zone_prices.items()},
        "volume_kwh": kwh(outcome.volume_wh),
        "welfare_thb": outcome.welfare_milli / 1_000_000_000,
        "fees_thb": thb(sum(t.receipt.fee for t in outcome.trades)),
        "wheeling_thb": thb(sum(t.receipt.wheeling for t in outcome.trades)),
        "halted": outcome.halted,
        "trades": trades,
        "orders": {oid: status.value for oid, status in outcome.closed_orders.items()},
        "rejected": [r.as_json() for r in rejected or []],
        "volume_wh": outcome.volume_wh,
        "clearing_price_uthb_per_kwh": price,
        "welfare_uthb": outcome.welfare_uthb,
    }
