"""What the parts of `Trading` share (services/trading.py puts them together): the state
`Trading.__init__` sets, the helpers over stored rows, and, for the type checker only, the
methods one part calls of another (each defined in its own part).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine

from gridtokenx.adapters.events import Event
from gridtokenx.market.config import MarketConfig
from gridtokenx.market.engine import Market
from gridtokenx.market.errors import OrderRejected
from gridtokenx.market.orders import Order, OrderStatus, Side, TimeInForce
from gridtokenx.services.exchange import Exchange
from gridtokenx.services.site import Platform

MAX_ORDERS_PER_EPOCH = 50
LIVE = ("open", "partially_filled")
CANCELLING = "cancelling"  # asked on an instance that is not the sequencer, not yet applied
OPEN_EPOCH = "open_epoch"  # settings row: the epoch orders go into, moved by the sequencer
EPOCH_LOCK = 0x47545831_00000002  # PostgreSQL advisory lock: placements shared, close exclusive
STALE_CLAIM_S = 60  # no request runs longer: an older pending claim was cut short
STALE_INTENT_MS = 30_000  # an escrow intent older than this is not being placed any more


def order_id() -> str:
    """A new order's id: milliseconds, then 32 random bits, so that ids grow with time and
    each new row lands at the end of the id indexes instead of on a random page of them."""
    return f"o-{time.time_ns() // 1_000_000:012x}{secrets.token_hex(4)}"


def new_order(user_id: str, side: str, quantity_wh: int, price: int, zone: str, tif: str) -> Order:
    try:
        return Order(
            order_id(), user_id, Side(side), quantity_wh, price, zone, TimeInForce(tif.lower())
        )
    except ValueError as err:
        raise OrderRejected("invalid_order", str(err)) from None


def order_of(r: Any) -> Order:
    """An order as its row has it (what it has filled, its status)."""
    return Order(
        r.order_id,
        r.user_id,
        Side(r.side),
        r.quantity_wh,
        r.price,
        r.zone,
        TimeInForce(r.tif),
        filled_wh=r.filled_wh,
        status=OrderStatus(r.status),
    )


MAX_BATCH = 256  # placements in one group commit


def halt_of(saved: str | None) -> str | None:
    """An operator's halt reason as stored in `settings` (None: not halted)."""
    return None if saved is None else str(json.loads(saved))


def epoch_of(saved: str | None) -> int | None:
    """The open epoch as stored in `settings` (None: none stored yet)."""
    return None if saved is None else int(json.loads(saved))


class MarketBase:
    """The attributes every part reads, as `Trading.__init__` sets them."""

    platform: Platform
    engine: Engine
    leading: bool
    shared: bool
    grid: Any
    config: MarketConfig
    epoch_s: float
    clock: Callable[[], float]
    lock: threading.RLock
    wallets: Any
    market: Market
    exchange: Exchange
    listeners: list[Callable[[Event], None]]
    publish_failures: int

    if TYPE_CHECKING:  # defined in trading.py, placing.py or epochs.py

        def _exchange(self, market: Market) -> Exchange: ...
        def _open_epoch(self, c: Connection) -> int: ...
        def _set_open_epoch(self, epoch: int) -> None: ...
        def current_epoch(self) -> int: ...
        def ends_at(self, epoch: int) -> float: ...
        def publish(self, event: Event) -> None: ...
        def follow(self) -> None: ...
        def tick(self) -> list[int]: ...
        def recover(self) -> None: ...
        def _sweep(self, epoch: int) -> None: ...
        def _load(self, market: Market, exchange: Exchange, epoch: int) -> None: ...
        def _reload_book(self) -> None: ...
        def _sequence(
            self, market: Market, exchange: Exchange, epoch: int, loading: bool = False
        ) -> None: ...
        def meters_of_users(self, user_ids: Collection[str]) -> dict[str, str]: ...
