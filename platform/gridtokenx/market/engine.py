"""The market: order validation, the epoch's book, clearing and circuit breakers.

One `Market` is one market (one mechanism) moving through epochs. It is pure: callers
pass time in, and persist what it returns. Every refusal is an `OrderRejected` with a
stable code, raised before anything changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from heapq import heappop, heappush

import numpy as np

from gridtokenx.market.auction import OrderTable, Pricing, clear, wheeling_matrix
from gridtokenx.market.book import ContinuousBook
from gridtokenx.market.breaker import PriceBand, ReferenceBand
from gridtokenx.market.config import MarketConfig, Mechanism
from gridtokenx.market.errors import OrderRejected
from gridtokenx.market.orders import LIVE_STATUSES, Order, OrderStatus, TimeInForce
from gridtokenx.market.trades import Trade

_FOK = TimeInForce.FOK
_GFE = TimeInForce.GFE
_FILLED = OrderStatus.FILLED
_PARTIAL = OrderStatus.PARTIALLY_FILLED
_CANCELLED = OrderStatus.CANCELLED
_LIVE = LIVE_STATUSES
_new_tuple = tuple.__new__  # builds a Trade without the NamedTuple's Python-level __new__


@dataclass(frozen=True)
class EpochOutcome:
    """What an epoch's clearing did. `clearing_price` is the uniform price (of the zone
    that sold most) under pay-as-clear, the volume-weighted average energy price under
    CDA and pay-as-bid, None without trades."""

    epoch: int
    mechanism: Mechanism
    trades: list[Trade]
    clearing_price: int | None
    zone_prices: dict[str, int]
    welfare_milli: int
    halted: str | None = None
    closed_orders: dict[str, OrderStatus] = field(default_factory=dict)

    @property
    def volume_wh(self) -> int:
        return sum(t.quantity_wh for t in self.trades)

    @property
    def welfare_uthb(self) -> int:
        return self.welfare_milli // 1000


def _vwap(trades: list[Trade]) -> int | None:
    volume = sum(t.quantity_wh for t in trades)
    if volume == 0:
        return None
    return sum(t.quantity_wh * t.price for t in trades) // volume


class Market:
    """A market moving through epochs under one clearing mechanism."""

    def __init__(self, config: MarketConfig, epoch: int = 0) -> None:
        self.epoch = epoch
        self.halted: str | None = None
        self._orders: dict[str, Order] = {}
        self._live: dict[str, list[Order]] = {}
        self._seq = 0
        self._cda = config.mechanism is Mechanism.CDA
        self._open = config.wheeling.open
        self._pool = self._cda and self._open
        self._book = ContinuousBook(config.wheeling)
        self._trades: list[Trade] = []
        self._band = PriceBand(config.breaker_bps, config.breaker_window_ms)
        self._reference = ReferenceBand(config.breaker_bps, config.reference_epochs)
        self.config = config

    @property
    def config(self) -> MarketConfig:
        return self._config

    @config.setter
    def config(self, config: MarketConfig) -> None:
        """Operators change parameters (`Trading.set_parameters`) while the market runs:
        the next order sees the new fee, bounds and breaker limits (what the hot path
        keeps of them follows here). The mechanism and the wheeling zones stay the ones
        the market was made with."""
        self._config = config
        self._fee_bps = config.fee_bps
        self._band.configure(config.breaker_bps, config.breaker_window_ms)
        self._reference.bps = config.breaker_bps

    # -- orders -------------------------------------------------------------------------

    def live_orders(self, owner: str) -> list[Order]:
        orders = self._live.get(owner)
        if not orders:
            return []
        alive = [o for o in orders if o.is_live]
        self._live[owner] = alive
        return alive

    def validate(self, order: Order) -> None:
        """Raise OrderRejected if `order` may not enter the market now."""
        cfg = self.config
        if self.halted is not None:
            raise OrderRejected("market_halted", f"market is halted: {self.halted}")
        if order.id in self._orders:
            raise OrderRejected("duplicate_order_id", f"order id {order.id!r} already used")
        quantity = order.quantity_wh
        if quantity <= 0:
            raise OrderRejected("quantity_not_positive", "quantity must be more than 0 Wh")
        if quantity > cfg.max_quantity_wh:
            raise OrderRejected(
                "quantity_too_large",
                f"quantity {quantity} Wh exceeds the maximum {cfg.max_quantity_wh} Wh",
            )
        if not cfg.min_price <= order.price <= cfg.max_price:
            raise OrderRejected(
                "price_out_of_bounds",
                f"price {order.price} uTHB/kWh outside {cfg.min_price}..{cfg.max_price}",
            )
        if not self._open and not cfg.wheeling.knows(order.zone):
            raise OrderRejected("unknown_zone", f"zone {order.zone!r} is not in this market")
        if self._live.get(order.owner):
            self._validate_owner(order)

    def _validate_owner(self, order: Order) -> None:
        """The checks against the owner's live orders: the open-order limit, self-trade."""
        live = self.live_orders(order.owner)
        if not live:
            return
        if len(live) >= self.config.max_open_orders_per_user:
            raise OrderRejected(
                "too_many_open_orders",
                f"{order.owner} already has {len(live)} open orders this epoch",
            )
        for other in live:
            if other.side is not order.side and self._crosses(order, other):
                raise OrderRejected(
                    "self_trade", f"order would trade with the owner's own order {other.id}"
                )

    def _crosses(self, a: Order, b: Order) -> bool:
        buy, sell = (a, b) if a.is_buy else (b, a)
        rate = self.config.wheeling.rate(sell.zone, buy.zone)
        return rate is not None and buy.price >= sell.price + rate

    def place(self, order: Order, now_ms: int = 0) -> list[Trade]:
        """Accept `order` (its seq is assigned here); in a CDA it trades at once.

        A GFE or IOC order in a CDA without zones (one book a side, no wheeling) is the
        hot path of every CDA and is handled here, written out flat. The checks are
        `validate`'s, in its order and with its codes; the matching is the same as
        `ContinuousBook.execute`; both are tested trade for trade and code for code
        against `reference.py`.

        The trade prices of one incoming order are monotonic (best level first), so the
        breaker's window is read once, extended by this order's prices as they execute,
        and recorded once with the lowest and highest of them: the same admissions as
        asking `PriceBand.admit` trade by trade."""
        if not self._pool or order.tif is _FOK:
            return self._place_general(order, now_ms)
        orders = self._orders
        oid = order.id
        quantity = order.quantity_wh
        price = order.price
        owner = order.owner
        cfg = self._config
        live_orders = self._live.get(owner)
        if (
            self.halted is not None
            or oid in orders
            or quantity <= 0
            or quantity > cfg.max_quantity_wh
            or price < cfg.min_price
            or price > cfg.max_price
            or live_orders
        ):
            self.validate(order)  # raises with the code, or the owner's orders pass
            live_orders = self._live.get(owner)  # validate keeps only the live ones
        order.seq = self._seq = self._seq + 1
        orders[oid] = order
        book = self._book
        buying = order.is_buy
        if buying:
            other, limit = book.pool_asks, price
        else:
            other, limit = book.pool_bids, -price
        heap = other.heap
        remaining = quantity
        trades: list[Trade] = []
        if heap and heap[0] <= limit:  # the best key may hold only dead orders: see below
            by_key = other.levels
            zone = order.zone
            fee_bps = self._fee_bps
            band = self._band
            lows = band.lows
            stopped = False
            while True:
                level = by_key[heap[0]]
                h = level[0]
                resting = level[h]
                if resting.status not in _LIVE:  # cancelled: skip the dead, drop a drained level
                    h += 1
                    end = len(level)
                    while h < end and level[h].status not in _LIVE:
                        h += 1
                    if h < end:
                        level[0] = h
                    else:
                        del by_key[heappop(heap)]
                        if not heap:
                            break
                    if heap[0] > limit:
                        break
                    continue
                at = resting.price
                if not trades:  # the breaker's window, read once for this order
                    if now_ms - band.window_ms > band.fresh_until or not lows:
                        band.window(now_ms)  # expire what is old; the summary follows
                    if lows:
                        lo, hi, top, bottom = band.lo, band.hi, band.top, band.bottom
                    else:
                        lo = hi = at
                        top, bottom = band.limits(at, at)
                    if at > top or at < bottom:
                        stopped = True
                        break
                    first = at
                    # the later prices of this order are monotonic (best level first): the
                    # window's far end stays, so only the first price can move lo or hi
                    if at < lo:
                        top, bottom = band.limits(at, hi)
                    elif at > hi:
                        top, bottom = band.limits(lo, at)
                elif at > top or at < bottom:
                    stopped = True
                    at = trades[-1].price  # the last price traded, for the record
                    break
                q = resting.quantity_wh - resting.filled_wh
                if q > remaining:
                    resting.filled_wh += remaining
                    resting.status = _PARTIAL
                    q = remaining
                    remaining = 0
                else:
                    resting.filled_wh = resting.quantity_wh
                    resting.status = _FILLED
                    remaining -= q
                    h += 1
                    if h < len(level):
                        level[0] = h
                    else:
                        del by_key[heappop(heap)]
                if buying:
                    trade = (oid, resting.id, owner, resting.owner, zone, resting.zone,
                             q, at, 0, fee_bps)  # fmt: skip
                else:
                    trade = (resting.id, oid, resting.owner, owner, resting.zone, zone,
                             q, at, 0, fee_bps)  # fmt: skip
                trades.append(_new_tuple(Trade, trade))
                if not remaining or not heap or heap[0] > limit:
                    break
            if trades:
                order.filled_wh = quantity - remaining
                order.status = _PARTIAL if remaining else _FILLED
                low, high = (first, at) if buying else (at, first)  # `at`: the last traded
                # `not band.covers(now_ms, low, high)`, inlined
                if not (lows and band.fresh_until >= now_ms and band.lo <= low and high <= band.hi):
                    band.record(now_ms, low, high)
                self._trades.extend(trades)
            if stopped:
                order.status = _CANCELLED
                self._halt_on_band()
                return trades
        if remaining:
            if order.tif is not _GFE:
                order.status = _CANCELLED
            else:  # rests: book.rest(order), inlined; the key is minus the other side's
                own = book.pool_bids if buying else book.pool_asks
                key = -limit  # one int object for the heap and the dict: found by identity
                at_level = own.levels.get(key)
                if at_level is None:
                    own.levels[key] = [1, order]
                    heappush(own.heap, key)
                else:
                    at_level.append(order)
                book.rested = True
                if live_orders is None:
                    self._live[owner] = [order]
                else:
                    live_orders.append(order)
        return trades

    def _place_general(self, order: Order, now_ms: int) -> list[Trade]:
        """`place` for call auctions, zoned CDAs and FOK orders."""
        self.validate(order)
        self._seq += 1
        order.seq = self._seq
        self._orders[order.id] = order
        if not self._cda:
            self._add_live(order)
            return []
        if order.tif is _FOK and self._book.fillable(order) < order.quantity_wh:
            order.status = OrderStatus.CANCELLED
            return []
        trades, stopped = self._book.execute(order, self._band, now_ms, self._fee_bps)
        if order.status in LIVE_STATUSES:  # it rests; one that is done never counts
            self._add_live(order)
        self._trades.extend(trades)
        if stopped:
            self._halt_on_band()
        return trades

    def _halt_on_band(self) -> None:
        self.halted = (
            f"price moved more than {self.config.breaker_bps / 100:g}% "
            f"within {self.config.breaker_window_ms // 1000} s"
        )

    def _add_live(self, order: Order) -> None:
        live = self._live.get(order.owner)
        if live is None:
            self._live[order.owner] = [order]
        else:
            live.append(order)

    def cancel(self, order_id: str, owner: str) -> Order:
        """Cancel a live order of `owner`; its filled part stays filled."""
        order = self._orders.get(order_id)
        if order is None:
            raise OrderRejected("order_not_found", f"no order {order_id!r} in this epoch")
        if order.owner != owner:
            raise OrderRejected("not_owner", f"order {order_id!r} belongs to someone else")
        if not order.is_live:
            raise OrderRejected("order_not_open", f"order {order_id!r} is {order.status.value}")
        order.status = OrderStatus.CANCELLED
        return order

    def order(self, order_id: str) -> Order | None:
        return self._orders.get(order_id)

    def depth(self) -> dict[str, dict[str, list[tuple[int, int]]]]:
        """Live quantity per price level and zone, best first: the CDA's resting book, or
        the orders waiting for a call auction's clearing."""
        if self._cda:
            return self._book.depth()
        levels: dict[str, dict[str, dict[int, int]]] = {}
        for o in self._orders.values():
            if o.is_live:
                side = levels.setdefault(o.zone, {"bids": {}, "asks": {}})[
                    "bids" if o.is_buy else "asks"
                ]
                side[o.price] = side.get(o.price, 0) + o.remaining_wh
        return {
            zone: {
                "bids": sorted(sides["bids"].items(), reverse=True),
                "asks": sorted(sides["asks"].items()),
            }
            for zone, sides in sorted(levels.items())
        }

    # -- halts ------------------------------------------------------------------------

    def halt(self, reason: str) -> None:
        self.halted = reason

    def resume(self) -> None:
        """Resume trading; the breakers forget their history, so the operator's decision
        to accept the new price level is not undone by the next check."""
        self.halted = None
        self._band.reset()
        self._reference.reset()

    # -- epochs -----------------------------------------------------------------------

    def clear_epoch(self) -> EpochOutcome:
        """Clear (call auctions) or close (CDA) this epoch and move to the next one.

        A call auction whose price breaks the reference band halts the market instead:
        nothing is filled, the orders stay open, and the epoch can be cleared again after
        `resume()`.
        """
        if self._cda:
            trades, self._trades = self._trades, []
            welfare = sum(
                t.quantity_wh * (self._orders[t.buy_id].price - self._orders[t.sell_id].price)
                - t.quantity_wh * t.wheeling_rate
                for t in trades
            )
            outcome = EpochOutcome(
                self.epoch, self.config.mechanism, trades, _vwap(trades), {}, welfare, self.halted
            )
            self._book = ContinuousBook(self.config.wheeling)
            return self._next_epoch(outcome)
        if self.halted is not None:
            raise OrderRejected("market_halted", f"market is halted: {self.halted}")
        live = [o for o in self._orders.values() if o.is_live]
        pricing = (
            Pricing.PAY_AS_BID
            if self.config.mechanism is Mechanism.PAY_AS_BID
            else (Pricing.UNIFORM)
        )
        while True:
            table = OrderTable.from_orders(live)
            result = clear(table, wheeling_matrix(self.config.wheeling, table.zones), pricing)
            partial_fok = [
                k for k in np.flatnonzero(table.fok) if 0 < result.filled[k] < table.qty[k]
            ]
            if not partial_fok:
                break
            # Withdraw the latest partly filled FOK order and clear again (deterministic).
            withdrawn = live.pop(max(partial_fok, key=lambda k: live[k].seq))
            withdrawn.status = OrderStatus.CANCELLED
        price = result.clearing_price
        if price is not None and not self._reference.allows(price):
            self.halted = (
                f"clearing price {price} uTHB/kWh deviates more than "
                f"{self.config.breaker_bps / 100:g}% from the reference "
                f"{self._reference.reference} uTHB/kWh"
            )
            return EpochOutcome(
                self.epoch, self.config.mechanism, [], None, {}, 0, halted=self.halted
            )
        trades = []
        fee = self.config.fee_bps
        for b, s, q, p, w in zip(
            result.trade_buy.tolist(),
            result.trade_sell.tolist(),
            result.trade_qty.tolist(),
            result.trade_price.tolist(),
            result.trade_wheeling.tolist(),
            strict=True,
        ):
            buy, sell = live[b], live[s]
            buy.fill(q)
            sell.fill(q)
            trades.append(
                Trade(buy.id, sell.id, buy.owner, sell.owner, buy.zone, sell.zone, q, p, w, fee)
            )
        if price is not None:
            self._reference.record(price, result.volume_wh)
        outcome = EpochOutcome(
            self.epoch,
            self.config.mechanism,
            trades,
            price if pricing is Pricing.UNIFORM else _vwap(trades),
            result.zone_prices,
            result.welfare_milli,
        )
        return self._next_epoch(outcome)

    def _next_epoch(self, outcome: EpochOutcome) -> EpochOutcome:
        for order in self._orders.values():
            if order.is_live:
                order.status = (
                    OrderStatus.EXPIRED if order.tif is TimeInForce.GFE else OrderStatus.CANCELLED
                )
        outcome.closed_orders.update({o.id: o.status for o in self._orders.values()})
        self._orders = {}
        self._live = {}
        self.epoch += 1
        return outcome
