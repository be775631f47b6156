"""Epoch call auctions: welfare-maximising allocation, uniform or pay-as-bid prices.

Pure and I/O-free. Orders come in as columns (numpy arrays), so that an epoch of a
million orders is cleared without a Python object per order.

Allocation (both pricings): the trades maximise total surplus
    sum over trades of quantity * (buyer limit - seller limit - wheeling(seller zone, buyer zone))
and, among allocations of equal surplus, the traded volume. Within a zone the orders
that trade are chosen by price-time priority (better price first, then lower submission
sequence), so only the marginal order of a zone can be partly filled.

Uniform prices (pay-as-clear): every seller in zone j receives the zone price p_j per
kWh, every buyer pays p_j + wheeling(j, i). The zone prices are the midpoint (floored to
the uTHB) of the lowest and the highest competitive-equilibrium prices, i.e. of the
duals of the allocation problem. With one zone and no wheeling this is the classic rule:
the midpoint of [max(last accepted ask, first rejected bid), min(last accepted bid,
first rejected ask)].

Pay-as-bid (discriminatory): the same allocation and pairing, each buyer pays its own
limit; the seller receives that less wheeling.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

from gridtokenx.market.config import Wheeling
from gridtokenx.market.orders import Order, TimeInForce

I64 = NDArray[np.int64]
NOT_ALLOWED = -1


class Pricing(StrEnum):
    UNIFORM = "uniform"
    PAY_AS_BID = "pay-as-bid"


@dataclass(frozen=True)
class OrderTable:
    """Orders as columns; row k is order k of the epoch."""

    is_buy: NDArray[np.bool_]
    qty: I64
    price: I64
    zone: I64
    seq: I64
    fok: NDArray[np.bool_]
    zones: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.qty.shape[0])

    @classmethod
    def from_orders(cls, orders: Sequence[Order]) -> OrderTable:
        zones = tuple(sorted({o.zone for o in orders}))
        code = {z: k for k, z in enumerate(zones)}
        return cls(
            is_buy=np.fromiter((o.is_buy for o in orders), bool, len(orders)),
            qty=np.fromiter((o.remaining_wh for o in orders), np.int64, len(orders)),
            price=np.fromiter((o.price for o in orders), np.int64, len(orders)),
            zone=np.fromiter((code[o.zone] for o in orders), np.int64, len(orders)),
            seq=np.fromiter((o.seq for o in orders), np.int64, len(orders)),
            fok=np.fromiter((o.tif is TimeInForce.FOK for o in orders), bool, len(orders)),
            zones=zones,
        )

    def without(self, row: int) -> NDArray[np.bool_]:
        keep = np.ones(len(self), bool)
        keep[row] = False
        return keep


def wheeling_matrix(wheeling: Wheeling, zones: Sequence[str]) -> I64:
    """W[seller zone, buyer zone] in uTHB/kWh; NOT_ALLOWED where the pair cannot trade."""
    matrix = np.full((len(zones), len(zones)), NOT_ALLOWED, np.int64)
    for j, source in enumerate(zones):
        for i, sink in enumerate(zones):
            rate = wheeling.rate(source, sink)
            if rate is not None:
                matrix[j, i] = rate
    return matrix


@dataclass(frozen=True)
class Clearing:
    """The outcome of one call auction, as columns; trade rows index the OrderTable.

    `trade_price` is the energy price the seller's side is paid per kWh (before the
    platform fee); the buyer pays it plus `trade_wheeling`. `clearing_price` is the
    uniform price of the zone that sold most (lowest zone name on ties), None with no
    trade or under pay-as-bid.
    """

    filled: I64
    trade_buy: I64
    trade_sell: I64
    trade_qty: I64
    trade_price: I64
    trade_wheeling: I64
    zone_prices: dict[str, int]
    clearing_price: int | None
    welfare_milli: int

    @property
    def volume_wh(self) -> int:
        return int(self.trade_qty.sum())

    @property
    def welfare_uthb(self) -> int:
        """Total surplus in uTHB (floored once, from the exact sum)."""
        return self.welfare_milli // 1000


def _priority(table: OrderTable, rows: I64, buy: bool) -> I64:
    """Rows sorted by price-time priority: better price first, then lower sequence."""
    prices = table.price[rows]
    return rows[np.lexsort((table.seq[rows], -prices if buy else prices))]


def _fills(order_rows: I64, qty: I64, total: int, filled: I64) -> None:
    cum = np.cumsum(qty[order_rows])
    filled[order_rows] = np.clip(total - (cum - qty[order_rows]), 0, qty[order_rows])


def clear(table: OrderTable, wheeling: I64, pricing: Pricing) -> Clearing:
    """Clear one epoch; FOK orders are not treated specially here (see clear_epoch)."""
    buys = np.flatnonzero(table.is_buy)
    sells = np.flatnonzero(~table.is_buy)
    used_s = np.unique(table.zone[sells])
    used_b = np.unique(table.zone[buys])
    block = wheeling[np.ix_(used_s, used_b)] if len(buys) and len(sells) else wheeling[:0, :0]
    if block.size == 0 or (block.min() == block.max() and block.min() != NOT_ALLOWED):
        rate = int(block.flat[0]) if block.size else 0
        return _clear_pool(table, buys, sells, rate, pricing)
    return _clear_zonal(table, buys, sells, wheeling, pricing)


def _result(
    table: OrderTable,
    filled: I64,
    tb: I64,
    ts: I64,
    tq: I64,
    tw: I64,
    seller_zone_price: dict[int, int],
    pricing: Pricing,
) -> Clearing:
    bid = table.price[tb]
    if pricing is Pricing.UNIFORM:
        lookup = np.zeros(len(table.zones), np.int64)
        for zone, price in seller_zone_price.items():
            lookup[zone] = price
        tp = lookup[table.zone[ts]]
        zone_prices = {table.zones[z]: p for z, p in sorted(seller_zone_price.items())}
    else:
        tp = bid - tw
        zone_prices = {}
    welfare = int((tq * (bid - table.price[ts] - tw)).sum())
    clearing_price = None
    if zone_prices:
        sold = np.bincount(table.zone[ts], weights=tq, minlength=len(table.zones))
        reference = min(seller_zone_price, key=lambda z: (-sold[z], table.zones[z]))
        clearing_price = seller_zone_price[reference]
    return Clearing(filled, tb, ts, tq, tp, tw, zone_prices, clearing_price, welfare)


def _clear_pool(table: OrderTable, buys: I64, sells: I64, rate: int, pricing: Pricing) -> Clearing:
    """One pool with a single wheeling rate: fully vectorised crossing of the curves."""
    filled = np.zeros(len(table), np.int64)
    empty = np.zeros(0, np.int64)
    if len(buys) == 0 or len(sells) == 0:
        return _result(table, filled, empty, empty, empty, empty, {}, pricing)
    ob, os_ = _priority(table, buys, True), _priority(table, sells, False)
    pb, ps = table.price[ob], table.price[os_]
    cb, cs = np.cumsum(table.qty[ob]), np.cumsum(table.qty[os_])
    # The last traded unit ends some buyer's or seller's range: test every such end.
    js = np.searchsorted(cs, cb, "left")
    ok_b = js < len(cs)
    ok_b[ok_b] = pb[ok_b] >= ps[js[ok_b]] + rate
    ib = np.searchsorted(cb, cs, "left")
    ok_s = ib < len(cb)
    ok_s[ok_s] = pb[ib[ok_s]] >= ps[ok_s] + rate
    volume = max(int(cb[ok_b].max()) if ok_b.any() else 0, int(cs[ok_s].max()) if ok_s.any() else 0)
    if volume == 0:
        return _result(table, filled, empty, empty, empty, empty, {}, pricing)
    b_last = int(pb[np.searchsorted(cb, volume, "left")])
    a_last = int(ps[np.searchsorted(cs, volume, "left")])
    lo, hi = a_last, b_last - rate
    k = int(np.searchsorted(cb, volume + 1, "left"))
    if k < len(cb):
        lo = max(lo, int(pb[k]) - rate)
    k = int(np.searchsorted(cs, volume + 1, "left"))
    if k < len(cs):
        hi = min(hi, int(ps[k]))
    _fills(ob, table.qty, volume, filled)
    _fills(os_, table.qty, volume, filled)
    ends = np.union1d(cb[cb < volume], cs[cs < volume])
    ends = np.append(ends, volume)
    starts = np.concatenate(([0], ends[:-1]))
    tb = ob[np.searchsorted(cb, starts, "right")]
    ts = os_[np.searchsorted(cs, starts, "right")]
    tw = np.full(len(ends), rate, np.int64)
    price = (lo + hi) // 2
    zone_price = {int(z): price for z in np.unique(table.zone[ts])}
    return _result(table, filled, tb, ts, ends - starts, tw, zone_price, pricing)


@dataclass
class _Curve:
    """One zone's aggregated supply (ascending) or demand (descending) price levels."""

    prices: list[int]
    cum: list[int]
    used: int = 0

    def forward(self) -> tuple[int, int] | None:
        """(price, capacity) of the next unit's level, if any remains."""
        k = _bisect_gt(self.cum, self.used)
        if k == len(self.cum):
            return None
        return self.prices[k], self.cum[k] - self.used

    def backward(self) -> tuple[int, int] | None:
        """(price, capacity) of the last used unit's level, if any is used."""
        if self.used == 0:
            return None
        k = _bisect_gt(self.cum, self.used - 1)
        return self.prices[k], self.used - (self.cum[k - 1] if k else 0)


def _bisect_gt(values: list[int], x: int) -> int:
    lo, hi = 0, len(values)
    while lo < hi:
        mid = (lo + hi) // 2
        if values[mid] > x:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _curve(table: OrderTable, rows: I64, buy: bool) -> _Curve:
    ordered = _priority(table, rows, buy)
    prices = table.price[ordered]
    starts = np.concatenate(([0], np.flatnonzero(np.diff(prices)) + 1))
    levels = np.add.reduceat(table.qty[ordered], starts)
    return _Curve(prices[starts].tolist(), np.cumsum(levels).tolist())


Edge = tuple[int, int, int, int]  # (from node, to node, cost, capacity)
INF = 1 << 62


def _bellman_ford(n: int, edges: list[Edge], source: int) -> tuple[list[int], list[int]]:
    dist = [INF] * n
    via = [-1] * n
    dist[source] = 0
    for _ in range(n):
        changed = False
        for k, (u, v, cost, cap) in enumerate(edges):
            if cap > 0 and dist[u] < INF and dist[u] + cost < dist[v]:
                dist[v] = dist[u] + cost
                via[v] = k
                changed = True
        if not changed:
            break
    return dist, via


def _clear_zonal(
    table: OrderTable, buys: I64, sells: I64, wheeling: I64, pricing: Pricing
) -> Clearing:
    """Zones with different wheeling: successive shortest paths over price levels.

    Nodes: 0 source, 1 sink, 2+j seller zone j, 2+Z+i buyer zone i. A path costs
    ask + wheeling - bid, so augmenting while the cheapest path costs <= 0 maximises
    surplus (then volume); the final residual graph's shortest-path distances are the
    highest and lowest equilibrium zone prices.
    """
    n_z = len(table.zones)
    supply = {
        int(z): _curve(table, _in(table, sells, z), False) for z in np.unique(table.zone[sells])
    }
    demand = {int(z): _curve(table, _in(table, buys, z), True) for z in np.unique(table.zone[buys])}
    flow: dict[tuple[int, int], int] = {}
    pairs = [(j, i) for j in supply for i in demand if wheeling[j, i] != NOT_ALLOWED]
    n = 2 + 2 * n_z

    def edges(with_free_flow: bool) -> list[Edge]:
        out: list[Edge] = []
        for j, curve in supply.items():
            if (f := curve.forward()) is not None:
                out.append((0, 2 + j, f[0], f[1]))
            if (b := curve.backward()) is not None:
                out.append((2 + j, 0, -b[0], b[1]))
        for j, i in pairs:
            out.append((2 + j, 2 + n_z + i, int(wheeling[j, i]), INF))
            if flow.get((j, i), 0):
                out.append((2 + n_z + i, 2 + j, -int(wheeling[j, i]), flow[(j, i)]))
        for i, curve in demand.items():
            if (f := curve.forward()) is not None:
                out.append((2 + n_z + i, 1, -f[0], f[1]))
            if (b := curve.backward()) is not None:
                out.append((1, 2 + n_z + i, b[0], b[1]))
        if with_free_flow:
            total = sum(c.used for c in supply.values())
            out.append((1, 0, 0, INF))
            out.append((0, 1, 0, total))
        return out

    while True:
        graph = edges(False)
        dist, via = _bellman_ford(n, graph, 0)
        if dist[1] > 0:
            break
        path, node = [], 1
        while node != 0:
            path.append(graph[via[node]])
            node = path[-1][0]
        delta = min(e[3] for e in path)
        for u, v, _, _ in path:
            if u == 0:
                supply[v - 2].used += delta
            elif v == 0:
                supply[u - 2].used -= delta
            elif v == 1:
                demand[u - 2 - n_z].used += delta
            elif u == 1:
                demand[v - 2 - n_z].used -= delta
            elif u < 2 + n_z:
                flow[(u - 2, v - 2 - n_z)] = flow.get((u - 2, v - 2 - n_z), 0) + delta
            else:
                flow[(v - 2, u - 2 - n_z)] -= delta

    filled = np.zeros(len(table), np.int64)
    queues_s = {z: _queue(table, sells, z, False, c.used, filled) for z, c in supply.items()}
    queues_b = {z: _queue(table, buys, z, True, c.used, filled) for z, c in demand.items()}
    tb: list[int] = []
    ts: list[int] = []
    tq: list[int] = []
    tw: list[int] = []
    for (j, i), amount in sorted(flow.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        while amount > 0:
            sq, bq = queues_s[j], queues_b[i]
            q = min(amount, sq[0][1], bq[0][1])
            tb.append(bq[0][0])
            ts.append(sq[0][0])
            tq.append(q)
            tw.append(int(wheeling[j, i]))
            amount -= q
            for queue in (sq, bq):
                queue[0][1] -= q
                if queue[0][1] == 0:
                    queue.popleft()
    prices: dict[int, int] = {}
    if flow and any(flow.values()):
        graph = edges(True)
        high, _ = _bellman_ford(n, graph, 0)
        reverse = [(v, u, c, cap) for u, v, c, cap in graph]
        low, _ = _bellman_ford(n, reverse, 0)
        for j, curve in supply.items():
            if curve.used:
                prices[j] = (high[2 + j] - low[2 + j]) // 2
    return _result(
        table,
        filled,
        np.array(tb, np.int64),
        np.array(ts, np.int64),
        np.array(tq, np.int64),
        np.array(tw, np.int64),
        prices,
        pricing,
    )


def _in(table: OrderTable, rows: I64, zone: int) -> I64:
    selected: I64 = rows[table.zone[rows] == zone]
    return selected


def _queue(
    table: OrderTable, rows: I64, zone: int, buy: bool, total: int, filled: I64
) -> deque[list[int]]:
    """The zone's filled orders in priority order, each as [row, quantity still to pair]."""
    ordered = _priority(table, _in(table, rows, zone), buy)
    _fills(ordered, table.qty, total, filled)
    return deque([int(r), int(filled[r])] for r in ordered if filled[r] > 0)
