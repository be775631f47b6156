"""The researcher-facing order file (CSV in) and clearing report (JSON out).

CSV columns: id,owner,side,quantity_kwh,price_thb_per_kwh,zone (zone may be omitted,
then "default"), optionally tif (gfe|ioc|fok). Numbers are decimal text; quantities
have at most 3 decimals (Wh), prices at most 6 (uTHB). Rows enter the market in file
order, which is their submission sequence.
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
    line: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.code}: {self.message}"


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


def load(text: str, market: Market) -> tuple[list[Order], list[LineError]]:
    """Place every row into `market`; return the orders and every row's error."""
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        return [], [LineError(1, "missing_columns", f"header lacks {', '.join(missing)}")]
    reader.fieldnames = header
    orders: list[Order] = []
    errors: list[LineError] = []
    for row in reader:
        line = reader.line_num
        if None in row:
            errors.append(LineError(line, "extra_fields", "more fields than the header"))
            continue
        try:
            order = _order(row)
            market.place(order)
        except (UnitError, OrderRejected) as exc:
            message = exc.message if isinstance(exc, OrderRejected) else str(exc)
            errors.append(LineError(line, exc.code, message))
            continue
        orders.append(order)
    return orders, errors


def clear_file(text: str, config: MarketConfig) -> tuple[EpochOutcome | None, list[LineError]]:
    """Clear the orders of a file as one epoch; with any error, clear nothing."""
    market = Market(config)
    orders, errors = load(text, market)
    if errors:
        return None, errors
    if not orders:
        return None, [LineError(1, "no_orders", "the file has no orders")]
    return market.clear_epoch(), []


def report(outcome: EpochOutcome, fee_bps: int) -> dict[str, Any]:
    """The JSON report: display numbers in THB/kWh, plus exact integer units (_wh, _uthb)."""
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
        "volume_wh": outcome.volume_wh,
        "clearing_price_uthb_per_kwh": price,
        "welfare_uthb": outcome.welfare_uthb,
    }
