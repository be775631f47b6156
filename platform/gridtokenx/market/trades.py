"""A trade: who bought from whom, how much, at what price, and its itemised receipt."""

from __future__ import annotations

from typing import NamedTuple

from gridtokenx.units import Receipt, receipt


class Trade(NamedTuple):
    """One executed trade. `price` is the energy price per kWh the seller's side gets
    (before the platform fee); the buyer pays price + wheeling_rate per kWh.
    A NamedTuple because a busy CDA makes hundreds of thousands a second."""

    buy_id: str
    sell_id: str
    buyer: str
    seller: str
    buyer_zone: str
    seller_zone: str
    quantity_wh: int
    price: int
    wheeling_rate: int
    fee_bps: int

    @property
    def receipt(self) -> Receipt:
        return receipt(self.quantity_wh, self.price, self.wheeling_rate, self.fee_bps)
