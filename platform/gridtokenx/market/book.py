"""Continuous double auction: a price-time priority book per grid zone.

An incoming order trades at once against resting orders of the other side, best
effective price first: for an incoming buy the lowest ask + wheeling(seller zone, buyer
zone), for an incoming sell the highest bid - wheeling; ties go to the earlier resting
order (lower sequence), then the lower zone name. Every execution is at the resting
order's price: a resting sell gets its ask, a resting buy pays its bid. Pure and I/O-free.
"""

from __future__ import annotations

import heapq
from collections import deque

from gridtokenx.market.breaker import PriceBand
from gridtokenx.market.config import Wheeling
from gridtokenx.market.orders import LIVE_STATUSES, Order, OrderStatus
from gridtokenx.market.trades import Trade

OPEN_POOL = "*"


class _Levels:
    """One side of one zone: a heap of price keys and a FIFO of orders per key."""

    __slots__ = ("heap", "levels", "sign")

    def __init__(self, sign: int) -> None:
        self.sign = sign  # -1 for bids (highest first), +1 for asks (lowest first)
        self.heap: list[int] = []
        self.levels: dict[int, deque[Order]] = {}

    def add(self, order: Order) -> None:
        key = self.sign * order.price
        level = self.levels.get(key)
        if level is None:
            level = self.levels[key] = deque()
            heapq.heappush(self.heap, key)
        level.append(order)

    def head(self) -> Order | None:
        """The best live resting order, dropping cancelled or filled ones on the way."""
        heap, levels = self.heap, self.levels
        while heap:
            level = levels[heap[0]]
            while level and level[0].status not in LIVE_STATUSES:
                level.popleft()
            if level:
                return level[0]
            del levels[heapq.heappop(heap)]
        return None

    def depth(self) -> list[tuple[int, int]]:
        """(price, live quantity) per level, best first."""
        out = []
        for key in sorted(self.levels):
            qty = sum(o.remaining_wh for o in self.levels[key] if o.is_live)
            if qty:
                out.append((self.sign * key, qty))
        return out


class ContinuousBook:
    """The resting orders of a CDA market and the matching of incoming ones."""

    def __init__(self, wheeling: Wheeling) -> None:
        self.wheeling = wheeling
        self._bids: dict[str, _Levels] = {}
        self._asks: dict[str, _Levels] = {}

    def _pool(self, zone: str) -> str:
        return OPEN_POOL if self.wheeling.open else zone

    def _rate(self, seller_pool: str, buyer_pool: str) -> int | None:
        if self.wheeling.open:
            return 0
        return self.wheeling.rate(seller_pool, buyer_pool)

    def match(
        self, order: Order, band: PriceBand, now_ms: int, fee_bps: int
    ) -> tuple[list[Trade], bool]:
        """Execute `order` against the book; returns the trades and whether the breaker
        (`band`) refused a price and so stopped the matching before it."""
        if self.wheeling.open:
            return self._match_pool(order, band, now_ms, fee_bps)
        trades: list[Trade] = []
        pool = self._pool(order.zone)
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

    def _match_pool(
        self, order: Order, band: PriceBand, now_ms: int, fee_bps: int
    ) -> tuple[list[Trade], bool]:
        """The same matching for a market without zones (one book a side, no wheeling),
        written out flat because it is the hot path of every CDA."""
        trades: list[Trade] = []
        levels = (self._asks if order.is_buy else self._bids).get(OPEN_POOL)
        if levels is None:
            return trades, False
        heap, by_key = levels.heap, levels.levels
        limit = order.price if order.is_buy else -order.price
        remaining = order.quantity_wh - order.filled_wh
        stopped = False
        while remaining:
            level = None
            while heap:
                level = by_key[heap[0]]
                while level and level[0].status not in LIVE_STATUSES:
                    level.popleft()
                if level:
                    break
                del by_key[heapq.heappop(heap)]
            if not heap or heap[0] > limit or level is None:
                break
            resting = level[0]
            price = resting.price
            if not band.admit(price, now_ms):
                stopped = True
                break
            quantity = resting.quantity_wh - resting.filled_wh
            if quantity > remaining:
                quantity = remaining
                resting.filled_wh += quantity
                resting.status = OrderStatus.PARTIALLY_FILLED
            else:
                resting.filled_wh = resting.quantity_wh
                resting.status = OrderStatus.FILLED
                level.popleft()
            remaining -= quantity
            trades.append(_trade(order, resting, quantity, price, 0, fee_bps))
        if trades:
            order.fill(order.quantity_wh - remaining - order.filled_wh)
        return trades, stopped

    def fillable(self, order: Order) -> int:
        """How much of `order` would execute now (for FOK), without changing anything."""
        pool = self._pool(order.zone)
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
        pool = self._pool(order.zone)
        levels = books.get(pool)
        if levels is None:
            levels = books[pool] = _Levels(-1 if order.is_buy else 1)
        levels.add(order)

    def depth(self) -> dict[str, dict[str, list[tuple[int, int]]]]:
        """Book depth per pool: {"bids": [(price, Wh)...], "asks": [...]}, best first."""
        pools = sorted(set(self._bids) | set(self._asks))
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
