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


# -- firmware on the MicroPython unix port ---------------------------------------------

FIRMWARE_CYCLE = """
import gc, sys, time, json
from gtx import app, modbus
cfg = app.load_config(sys.argv[1])  # a path: the unix port dies on an argv over ~256 bytes
mode = sys.argv[2]
meter = app.Meter(cfg)
gc.collect()
baseline = gc.mem_alloc()
if mode == "time":
    from gtx import ed25519, reading
    n = 20
    t = time.ticks_us()
    for i in range(n):
        ed25519.sign(meter.seed, b"x" * 80 + bytes([i]), meter.public)
    sign_us = time.ticks_diff(time.ticks_us(), t) / n
    t = time.ticks_us()
    for i in range(1000):
        reading.encode_reading("mtr-0001", i, 1767225600 + i, 1234567 + i, 89012, 60,
                               2301, 5120, 985, 5000, 0)
    encode_us = time.ticks_diff(time.ticks_us(), t) / 1000
    print(json.dumps({"sign_us": sign_us, "encode_us": encode_us, "baseline": baseline}))
else:
    for _ in range(3):  # read, encode, sign, store, publish: the whole cycle
        assert meter.measure(), "chip read failed"
        assert meter.flush(), "publish failed"
    print(json.dumps({"baseline": baseline}))
"""


def firmware() -> dict[str, Any]:
    """Sign and encode timings, and the smallest heap a full meter cycle runs in.

    The firmware runs as the .mpy image `gridtokenx firmware build` makes. The cycle
    (chip read over Modbus from an emulated PZEM-004T, CBOR, Ed25519, ring
    write, QoS 1 publish to a private Mosquitto) runs under `micropython -X heapsize=N`
    for shrinking N: the smallest N that works is `peak_heap_kb`. On the unix port the
    firmware's own bytecode lives in that heap too (`baseline_heap_kb`)."""
    import json
    import shutil
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from gridtokenx.provision import _tool, build
    from gridtokenx.sim.devices import ChipServer, EmulatedChip, free_port

    micropython = _tool("micropython")
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with tempfile.TemporaryDirectory() as tmp, ChipServer([EmulatedChip()]) as chips:
        port = free_port()
        broker = subprocess.Popen(
            [mosquitto, "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            time.sleep(0.5)
            cfg = {
                "meter_id": "bench",
                "uart": {"tcp": chips.address, "timeout_ms": 100},
                "broker": {"host": "127.0.0.1", "port": port},
                "data_dir": str(Path(tmp) / "flash"),
                "interval_s": 60,
                "heartbeat_s": 300,
                "ring_capacity": 16,
                "ack": False,  # no hub: the broker's PUBACK frees a reading
                "watchdog_ms": 30000,
            }
            config = Path(tmp) / "config.json"
            config.write_text(json.dumps(cfg))
            image = build(config, Path(tmp) / "image")  # .mpy, as flashed onto a meter
            env = {"MICROPYPATH": f"{image}:{image / 'lib'}", "PATH": "/usr/bin:/bin"}

            def run(mode: str, heap_kb: int) -> dict[str, Any] | None:
                done = subprocess.run(
                    [
                        micropython,
                        "-X",
                        f"heapsize={heap_kb}k",
                        "-c",
                        FIRMWARE_CYCLE,
                        str(config),
                        mode,
                    ],
                    capture_output=True,
                    text=True,
                    env=env,
                    timeout=120,
                )
                if done.returncode != 0:
                    return None
                result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
                return result

            timing = run("time", 2048)
            if timing is None:
                raise RuntimeError("the firmware benchmark failed to run on micropython")
            low, high = 8, 512
            if run("cycle", high) is None:
                raise RuntimeError("a meter cycle failed even with 512 KB of heap")
            while high - low > 2:
                mid = (low + high) // 2
                if run("cycle", mid) is None:
                    low = mid
                else:
                    high = mid
        finally:
            broker.terminate()
            broker.wait()
    return {
        "benchmark": "firmware",
        "micropython": "unix port",
        "python": sys.version.split()[0],
        "sign_ms": round(timing["sign_us"] / 1000, 2),
        "encode_us": round(timing["encode_us"], 1),
        "peak_heap_kb": high,
        "baseline_heap_kb": round(timing["baseline"] / 1024, 1),
    }


def powerflow(grid: str, steps: int) -> dict[str, Any]:
    """AC power flow of `steps` quarter hours of a SimBench grid as one batch."""
    from gridtokenx.sim.grid import load_simbench
    from gridtokenx.sim.powerflow import BatchSolver

    g = load_simbench(grid)
    steps = min(steps, g.steps)
    solver = BatchSolver(g)
    start = time.perf_counter()
    result = solver.solve_profile(0, steps)
    seconds = time.perf_counter() - start
    return {
        "benchmark": "powerflow",
        "grid": grid,
        "solver": "power-grid-model newton-raphson, batch",
        "buses": int(result.v_pu.shape[1]),
        "steps": steps,
        "seconds": round(seconds, 3),
        "ms_per_step": round(seconds * 1000 / steps, 4),
        "v_min_pu": round(float(result.v_pu.min()), 4),
        "v_max_pu": round(float(result.v_pu.max()), 4),
        "max_line_loading_pct": round(float(result.line_loading.max()), 2),
        "peak_rss_mb": peak_rss_mb(),
    }


def start_day(preferred: int, days: int, year_days: int) -> int:
    """The scenario's default start day, or as much earlier as `days` need to end within
    the profiles' year (a year of 365 days starts on day 0)."""
    return max(0, min(preferred, year_days - days))


def scenario(households: int, days: int, grid: str | None = None) -> dict[str, Any]:
    """A scenario of `households` over `days` with the defaults of `Scenario` (grid check,
    readings, market, settlement): the whole run, its set-up (grid, equipment, chain and
    the first marks; the grid read from the set-up cache when it is warm) and the cost
    per day and per household-day. More households than the grid has are placed on as
    many copies of it as it takes (`Scenario.feeders`). It starts on the scenario's
    default day, or earlier when `days` would run past the end of the profiles' year."""
    from dataclasses import replace

    from gridtokenx.scenarios.config import Scenario
    from gridtokenx.scenarios.run import _base_grid, run

    sc = Scenario(households=households, days=days)
    if grid is not None:
        sc = replace(sc, grid=grid)
    base = _base_grid(sc.grid)
    per_feeder = len(base.households)
    sc = replace(sc, feeders=-(-households // per_feeder))  # as many copies as it takes
    sc = replace(sc, start_day=start_day(sc.start_day, days, base.steps // 96))
    result = run(sc)
    loop = result.seconds - result.setup_seconds
    return {
        "benchmark": "scenario",
        "grid": sc.grid,
        "feeders": sc.feeders,
        "households": households,
        "days": days,
        "start_day": sc.start_day,
        "epochs": result.epochs,
        "seconds": round(result.seconds, 3),
        "setup_s": round(result.setup_seconds, 3),
        "seconds_per_day": round(loop / days, 3),
        "ms_per_household_day": round(loop * 1000 / (households * days), 2),
        "trades_digest": result.trades_digest,
        "peak_rss_mb": peak_rss_mb(),
    }
