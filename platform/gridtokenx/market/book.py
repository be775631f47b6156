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
from collections.abc import Callable
from dataclasses import dataclass

from gridtokenx.market.config import Wheeling
from gridtokenx.market.orders import Order, OrderStatus

OPEN_POOL = "*"


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution: energy price for the seller, the buyer pays price + wheeling."""

    buy: Order
    sell: Order
    quantity_wh: int
    price: int
    wheeling: int


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
            while level and level[0].status not in (
                OrderStatus.OPEN,
                OrderStatus.PARTIALLY_FILLED,
            ):
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
        self, order: Order, admit: Callable[[int], bool] = lambda price: True
    ) -> tuple[list[Fill], bool]:
        """Execute `order` against the book; returns the fills and whether `admit`
        (the breaker) refused a price and so stopped the matching."""
        if self.wheeling.open:
            return self._match_pool(order, admit)
        fills: list[Fill] = []
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
            if not admit(price):
                return fills, True
            fills.append(self._execute(order, resting, price, rate))
        return fills, False

    @staticmethod
    def _execute(order: Order, resting: Order, price: int, rate: int) -> Fill:
        quantity = min(order.remaining_wh, resting.remaining_wh)
        order.fill(quantity)
        resting.fill(quantity)
        if order.is_buy:
            return Fill(order, resting, quantity, price, rate)
        return Fill(resting, order, quantity, price, rate)

    def _match_pool(self, order: Order, admit: Callable[[int], bool]) -> tuple[list[Fill], bool]:
        """The same matching for a market without zones: one book a side, no wheeling."""
        fills: list[Fill] = []
        levels = (self._asks if order.is_buy else self._bids).get(OPEN_POOL)
        if levels is None:
            return fills, False
        limit = order.price if order.is_buy else -order.price
        while order.filled_wh < order.quantity_wh:
            resting = levels.head()
            if resting is None or levels.sign * resting.price > limit:
                break
            if not admit(resting.price):
                return fills, True
            fills.append(self._execute(order, resting, resting.price, 0))
        return fills, False

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
