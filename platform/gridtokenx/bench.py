"""Benchmarks (`gridtokenx bench ...`): measured figures as JSON, never timed tests."""

from __future__ import annotations

import gc
import resource
import time
from typing import Any

import numpy as np

from gridtokenx.market.auction import OrderTable, Pricing, clear
from gridtokenx.market.config import MarketConfig, Mechanism
from gridtokenx.market.engine import Market
from gridtokenx.market.orders import Order, Side


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def random_table(n: int, seed: int = 1) -> OrderTable:
    """n orders, half buys, prices 2.00-8.00 THB/kWh in satang steps, 0.1-10 kWh."""
    rng = np.random.default_rng(seed)
    is_buy = rng.random(n) < 0.5
    price = rng.integers(200, 801, n, dtype=np.int64) * 10_000
    qty = rng.integers(100, 10_001, n, dtype=np.int64)
    return OrderTable(
        is_buy=is_buy,
        qty=qty,
        price=price,
        zone=np.zeros(n, np.int64),
        seq=np.arange(n, dtype=np.int64),
        fok=np.zeros(n, bool),
        zones=("default",),
    )


def clearing(orders: int, seed: int = 1) -> dict[str, Any]:
    """Uniform-price clearing of one epoch, including the per-order allocation."""
    table = random_table(orders, seed)
    wheeling = np.zeros((1, 1), np.int64)
    gc.collect()
    start = time.perf_counter()
    result = clear(table, wheeling, Pricing.UNIFORM)
    seconds = time.perf_counter() - start
    return {
        "benchmark": "clearing",
        "orders": orders,
        "trades": len(result.trade_qty),
        "volume_wh": result.volume_wh,
        "seconds": round(seconds, 4),
        "orders_per_s": round(orders / seconds),
        "peak_rss_mb": peak_rss_mb(),
    }


def cda(orders: int, seed: int = 1) -> dict[str, Any]:
    """Continuous double auction: place `orders` one by one through full validation."""
    rng = np.random.default_rng(seed)
    sides = (rng.random(orders) < 0.5).tolist()
    # A tight band around 5 THB so that about half the orders trade on arrival.
    prices = (rng.integers(480, 521, orders) * 10_000).tolist()
    qty = rng.integers(100, 10_001, orders).tolist()
    batch = [
        Order(
            id=str(k),
            owner=f"u{k}",
            side=Side.BUY if sides[k] else Side.SELL,
            quantity_wh=qty[k],
            price=prices[k],
        )
        for k in range(orders)
    ]
    market = Market(
        MarketConfig(mechanism=Mechanism.CDA, breaker_bps=10_000, max_open_orders_per_user=10**9)
    )
    gc.collect()
    gc.disable()
    trades = 0
    start = time.perf_counter()
    place = market.place
    for order in batch:
        trades += len(place(order, 0))
    seconds = time.perf_counter() - start
    gc.enable()
    return {
        "benchmark": "cda",
        "orders": orders,
        "trades": trades,
        "seconds": round(seconds, 4),
        "orders_per_s": round(orders / seconds),
        "peak_rss_mb": peak_rss_mb(),
    }
