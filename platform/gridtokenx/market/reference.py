"""The continuous double auction as first written, kept as the reference the fast book
(`book.py`) and the fused placement of `Market` are tested against on random order streams.

Plain and slow on purpose: one generic matching loop over every pool, the breaker asked
trade by trade, validation through `Market.validate`. Not used in production.
"""

from __future__ import annotations

import heapq
from collections import deque

from gridtokenx.market.breaker import PriceBand
from gridtokenx.market.config import MarketConfig, Wheeling
from gridtokenx.market.engine import EpochOutcome, Market
from gridtokenx.market.orders import LIVE_STATUSES, Order, OrderStatus, TimeInForce
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


class ReferenceBook:
    """The CDA book as first written: a heap and a FIFO per level, one generic loop."""

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


class ReferenceMarket(Market):
    """`Market` with the reference CDA: validate, then match in the reference book."""

    def __init__(self, config: MarketConfig, epoch: int = 0) -> None:
        super().__init__(config, epoch)
        self._ref = ReferenceBook(config.wheeling)

    def place(self, order: Order, now_ms: int = 0) -> list[Trade]:
        self.validate(order)
        self._seq += 1
        order.seq = self._seq
        self._orders[order.id] = order
        self._live.setdefault(order.owner, []).append(order)
        if not self._cda:
            return []
        if order.tif is TimeInForce.FOK and self._ref.fillable(order) < order.quantity_wh:
            order.status = OrderStatus.CANCELLED
            return []
        trades, stopped = self._ref.match(order, self._band, now_ms, self.config.fee_bps)
        self._trades.extend(trades)
        if stopped:
            self.halted = (
                f"price moved more than {self.config.breaker_bps / 100:g}% "
                f"within {self.config.breaker_window_ms // 1000} s"
            )
        if order.remaining_wh > 0:
            if stopped or order.tif is not TimeInForce.GFE:
                order.status = OrderStatus.CANCELLED
            else:
                self._ref.rest(order)
        return trades

    def depth(self) -> dict[str, dict[str, list[tuple[int, int]]]]:
        return self._ref.depth() if self._cda else super().depth()

    def _next_epoch(self, outcome: EpochOutcome) -> EpochOutcome:
        self._ref = ReferenceBook(self.config.wheeling)
        return super()._next_epoch(outcome)
