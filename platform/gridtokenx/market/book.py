"""Continuous double auction: a price-time priority book per grid zone.

An incoming order trades at once against resting orders of the other side, best
effective price first: for an incoming buy the lowest ask + wheeling(seller zone, buyer
zone), for an incoming sell the highest bid - wheeling; ties go to the earlier resting
order (lower sequence), then the lower zone name. Every execution is at the resting
order's price: a resting sell gets its ask, a resting buy pays its bid. Pure and I/O-free.

In a market without zones (the common case) `Market.place` matches GFE and IOC orders
itself in one flat loop over `pool_bids`/`pool_asks`; `execute` here is the general loop
over zones (and FOK orders). Both agree trade for trade with `reference.py` (tested on
random order streams).
"""

from __future__ import annotations

import heapq
from typing import Any

from gridtokenx.market.breaker import PriceBand
from gridtokenx.market.config import Wheeling
from gridtokenx.market.orders import LIVE_STATUSES, Order, OrderStatus, TimeInForce
from gridtokenx.market.trades import Trade

OPEN_POOL = "*"

_CANCELLED = OrderStatus.CANCELLED
_GFE = TimeInForce.GFE


class _Levels:
    """One side of one pool: a heap of integer price keys and a FIFO of orders per key.

    The key is the price for asks and minus the price for bids, so the heap's top is
    always the best price and one comparison with the incoming limit decides a cross.
    A level is a list `[head, order, order, ...]`: `level[0]` is the index of its first
    order not yet consumed (a list indexed by a small int is the cheapest access in
    CPython; a deque's `[0]` and `popleft` cost several times more). Consumed entries
    stay until the level drains, when it leaves the heap; every level in the heap has at
    least one entry at or after its head (possibly a dead one: cancelled, or filled by
    `ContinuousBook.execute`)."""

    __slots__ = ("heap", "levels", "sign")

    def __init__(self, sign: int) -> None:
        self.sign = sign  # -1 for bids (highest first), +1 for asks (lowest first)
        self.heap: list[int] = []
        self.levels: dict[int, list[Any]] = {}

    def add(self, order: Order) -> None:
        key = self.sign * order.price
        level = self.levels.get(key)
        if level is None:
            self.levels[key] = [1, order]
            heapq.heappush(self.heap, key)
        else:
            level.append(order)

    def head(self) -> Order | None:
        """The best live resting order, dropping cancelled or filled ones on the way."""
        heap, levels = self.heap, self.levels
        while heap:
            level = levels[heap[0]]
            at, end = level[0], len(level)
            while at < end and level[at].status not in LIVE_STATUSES:
                at += 1
            if at < end:
                level[0] = at
                head: Order = level[at]
                return head
            del levels[heapq.heappop(heap)]
        return None

    def orders(self, key: int) -> list[Order]:
        """The orders of one level not yet consumed, oldest first."""
        level = self.levels[key]
        return level[level[0] :]

    def depth(self) -> list[tuple[int, int]]:
        """(price, live quantity) per level, best first."""
        out = []
        for key in sorted(self.levels):
            qty = sum(o.remaining_wh for o in self.orders(key) if o.is_live)
            if qty:
                out.append((self.sign * key, qty))
        return out


class ContinuousBook:
    """The resting orders of a CDA market and the matching of incoming ones."""

    def __init__(self, wheeling: Wheeling) -> None:
        self.wheeling = wheeling
        self._open = wheeling.open
        self._bids: dict[str, _Levels] = {}
        self._asks: dict[str, _Levels] = {}
        # the one pool of a market without zones, made up front for the flat loop
        self.pool_bids = _Levels(-1)
        self.pool_asks = _Levels(1)
        if self._open:
            self._bids[OPEN_POOL] = self.pool_bids
            self._asks[OPEN_POOL] = self.pool_asks
        self.rested = False  # depth() shows a pool once an order has rested in it

    def _rate(self, seller_pool: str, buyer_pool: str) -> int | None:
        if self._open:
            return 0
        return self.wheeling.rate(seller_pool, buyer_pool)

    def execute(
        self, order: Order, band: PriceBand, now_ms: int, fee_bps: int
    ) -> tuple[list[Trade], bool]:
        """Trade `order` against the book, then rest what is left of a GFE order (cancel it
        otherwise). Returns the trades and whether the breaker (`band`) refused a price
        and so stopped the matching before it; a stopped order's remainder is cancelled."""
        trades, stopped = self._match_zones(order, band, now_ms, fee_bps)
        if order.remaining_wh > 0:
            if stopped or order.tif is not _GFE:
                order.status = _CANCELLED
            else:
                self.rest(order)
        return trades, stopped

    def _match_zones(
        self, order: Order, band: PriceBand, now_ms: int, fee_bps: int
    ) -> tuple[list[Trade], bool]:
        """The best effective price over every reachable pool, one execution at a time."""
        trades: list[Trade] = []
        pool = order.zone
        buying = order.is_buy
        books = self._asks if buying else self._bids
        while order.remaining_wh > 0:
            best: tuple[int, int, str, Order, int] | None = None
            for other_pool, levels in books.items():
                rate = self._rate(other_pool, pool) if buying else self._rate(pool, other_pool)
                if rate is None:
                    continue
                head = levels.head()
                if head is None:
                    continue
                effective = head.price + rate if buying else rate - head.price
                candidate = (effective, head.seq, other_pool, head, rate)
                if best is None or candidate[:3] < best[:3]:
                    best = candidate
            if best is None:
                break
            effective, _, _, resting, rate = best
            if (buying and effective > order.price) or (not buying and -effective < order.price):
                break
            price = resting.price if buying else resting.price - rate
            if not band.admit(price, now_ms):
                return trades, True
            quantity = min(order.remaining_wh, resting.remaining_wh)
            order.fill(quantity)
            resting.fill(quantity)
            trades.append(_trade(order, resting, quantity, price, rate, fee_bps))
        return trades, False

    def fillable(self, order: Order) -> int:
        """How much of `order` would execute now (for FOK), without changing anything."""
        pool = OPEN_POOL if self._open else order.zone
        books = self._asks if order.is_buy else self._bids
        total = 0
        for other_pool, levels in books.items():
            rate = self._rate(other_pool, pool) if order.is_buy else self._rate(pool, other_pool)
            if rate is None:
                continue
            for price, qty in levels.depth():
                if (order.is_buy and price + rate <= order.price) or (
                    not order.is_buy and price - rate >= order.price
                ):
                    total += qty
        return total

    def rest(self, order: Order) -> None:
        books = self._bids if order.is_buy else self._asks
        self.rested = True
        if self._open:
            levels = books[OPEN_POOL]
        else:
            found = books.get(order.zone)
            levels = books[order.zone] = found or _Levels(-1 if order.is_buy else 1)
        levels.add(order)

    def depth(self) -> dict[str, dict[str, list[tuple[int, int]]]]:
        """Book depth per pool: {"bids": [(price, Wh)...], "asks": [...]}, best first."""
        pools = sorted(set(self._bids) | set(self._asks)) if self.rested else []
        return {
            p: {
                "bids": self._bids[p].depth() if p in self._bids else [],
                "asks": self._asks[p].depth() if p in self._asks else [],
            }
            for p in pools
        }


def _trade(order: Order, resting: Order, quantity: int, price: int, rate: int, fee: int) -> Trade:
    buy, sell = (order, resting) if order.is_buy else (resting, order)
    return Trade(
        buy.id, sell.id, buy.owner, sell.owner, buy.zone, sell.zone, quantity, price, rate, fee
    )
