"""Orders: what a participant offers or asks for in one market epoch."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


class TimeInForce(StrEnum):
    """GFE rests until the epoch ends; IOC fills what it can at once; FOK all or nothing.

    In the epoch call auctions (uniform, pay-as-bid) "at once" means "at this epoch's
    clearing": an IOC remainder is cancelled instead of expiring, and an FOK order that
    would be only partly filled is withdrawn before the auction is cleared again.
    """

    GFE = "gfe"
    IOC = "ioc"
    FOK = "fok"


class OrderStatus(StrEnum):
    OPEN = "open"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


LIVE_STATUSES = frozenset({OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED})


@dataclass(slots=True)
class Order:
    """One limit order. Quantities in Wh, price in uTHB per kWh (see gridtokenx.units).

    For a buy the price is the most the buyer pays per kWh delivered, wheeling included;
    for a sell it is the least the seller accepts per kWh, before the platform fee.
    """

    id: str
    owner: str
    side: Side
    quantity_wh: int
    price: int
    zone: str = "default"
    tif: TimeInForce = TimeInForce.GFE
    seq: int = 0
    filled_wh: int = 0
    status: OrderStatus = OrderStatus.OPEN
    # derived once: the matching loop asks it hundreds of thousands of times a second
    is_buy: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.is_buy = self.side is Side.BUY

    @property
    def remaining_wh(self) -> int:
        return self.quantity_wh - self.filled_wh

    @property
    def is_live(self) -> bool:
        return self.status in LIVE_STATUSES

    def fill(self, quantity_wh: int) -> None:
        """Record an execution; status follows from the filled quantity."""
        self.filled_wh += quantity_wh
        self.status = (
            OrderStatus.FILLED
            if self.filled_wh == self.quantity_wh
            else OrderStatus.PARTIALLY_FILLED
        )
